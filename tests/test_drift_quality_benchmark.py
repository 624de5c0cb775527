"""The drift-quality benchmark, run in-process on one real data set with tiny settings."""

from __future__ import annotations

import argparse

import msgspec
import numpy as np
import pytest

from benchmarks import drift_quality
from benchmarks.report import Report, format_report
from benchmarks.scenario import available_scenarios
from benchmarks.shifts import SHIFTS, RowSource, Shift, apply


@pytest.fixture(scope="module")
def report() -> Report:
    parser = argparse.ArgumentParser()
    drift_quality.add_arguments(parser)
    args = parser.parse_args(
        ["--draws", "3", "--sizes", "100", "500", "--datasets", "breast_cancer"]
    )
    return drift_quality.run(args)


def test_is_a_listed_scenario() -> None:
    assert "drift-quality" in dict(available_scenarios())


def test_report_has_every_table_and_shift(report: Report) -> None:
    titles = [table.title.split(":")[0] for table in report.tables]
    assert titles == [
        "clean controls",
        "power, continuous shifted feature",  # breast_cancer has no tied feature
        "blame precision",
        "detection delay",  # to drift
        "detection delay",  # to the first warn
        "per data set (power",
        "not run",
    ]
    power = report.tables[1]
    assert [row[0] for row in power.rows] == [shift.name for shift in SHIFTS]
    assert power.columns == ("shift", "driftgate n=100", "peer n=100")
    for row in power.rows:
        assert all(isinstance(cell, float) and 0.0 <= cell <= 1.0 for cell in row[1:])
    assert report.tables[3].columns == ("shift", "n=100 continuous")
    # The live half of breast_cancer holds 285 rows: no window of 500 is drawn from it.
    assert report.tables[-1].rows == (("breast_cancer", 500, "live half 285 rows < n"),)
    assert {run["shift"] for run in report.runs} == {"clean", *(s.name for s in SHIFTS)}
    decoded = msgspec.json.decode(msgspec.json.encode(report), type=Report)
    assert decoded.tables == report.tables
    assert "clean controls" in format_report(report)


def test_clean_controls_never_reach_drift(report: Report) -> None:
    (clean,) = report.tables[0].rows
    columns = report.tables[0].columns
    row = dict(zip(columns, clean, strict=True))
    assert row["stream evaluations"] == 2 * drift_quality.CLEAN_EVALUATIONS
    assert row["at drift"] == 0
    assert row["delay prefixes at drift"] == 0
    false_drift = next(c for c in report.checks if c.name.startswith("clean streams"))
    assert false_drift.met
    assert false_drift.value == 0


def test_streams_never_repeat_a_row_inside_the_window() -> None:
    rng = np.random.default_rng(0)
    source = RowSource(120, 100, rng)
    pool = np.arange(120, dtype=np.int64)
    ids = np.concatenate([source.draw(pool, 100), *(source.draw(pool, 7) for _ in range(50))])
    for end in range(100, len(ids) + 1, 7):
        assert len(set(ids[end - 100 : end].tolist())) == 100


def test_shifts_change_one_feature_or_only_the_joint_distribution() -> None:
    rng = np.random.default_rng(0)
    rows = rng.normal(size=(200, 3))
    offset = apply(Shift("o", "offset", 0.5), rows, 1, mean=0.0, std=2.0, rng=rng)
    assert np.array_equal(offset[:, [0, 2]], rows[:, [0, 2]])
    assert np.allclose(offset[:, 1], rows[:, 1] + 1.0)
    scaled = apply(Shift("s", "scale", 1.5), rows, 0, mean=1.0, std=1.0, rng=rng)
    assert np.allclose(scaled[:, 0], 1.0 + (rows[:, 0] - 1.0) * 1.5)
    broken = apply(Shift("c", "correlation"), rows, 0, mean=0.0, std=1.0, rng=rng)
    assert np.array_equal(np.sort(broken, axis=0), np.sort(rows, axis=0))
    assert not np.array_equal(broken, rows)
