"""Drift monitor speed: window updates and statistics, against scipy on the same data.

Reference: 10,000 rows; window: the last 1,000 sampled rows; F features (default 100, 90
numeric and 10 categorical). Pinned to one CPU. Measures:

- update: values per second through `DriftWindow.update` (numba kernel, O(1) per value),
  in batches of 1,000 rows and of single rows (one sampled request at a time);
- statistics: every statistic of every feature from the window's counts (KS, PSI, JS,
  Hellinger, Wasserstein, mean shift, chi-square, rates), and the calibrated verdict;
- peer: scipy.stats.ks_2samp (exact two-sample KS) plus a numpy PSI per numeric feature
  and scipy.stats.chi2_contingency per categorical one, on the same window and reference
  rows, which is how a batch tool recomputes drift from raw data. Evidently is measured
  too when it is installed (optional; not a dependency).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable

import numpy as np

from benchmarks.report import Report, Table, check, machine_info

PACKAGES = ("numba", "numpy", "scipy", "polars", "evidently")
REFERENCE_ROWS = 10_000
WINDOW_ROWS = 1_000


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of the drift scenario."""
    parser.add_argument("--features", type=int, default=100, help="features (default 100)")
    parser.add_argument("--repeats", type=int, default=7, help="timed repeats (median)")
    parser.add_argument("--cpu", type=int, default=0, help="CPU to pin to (default 0)")


def run(args: argparse.Namespace) -> Report:
    """Measure the kernels and the peer; see the module docstring."""
    import polars as pl

    from monitor import DriftDetector, DriftWindow, warm_up
    from registry.profile import profile_series

    os.sched_setaffinity(0, {args.cpu})
    machine = machine_info(PACKAGES)
    rng = np.random.default_rng(0)
    categorical = max(1, args.features // 10)
    numeric = args.features - categorical
    reference = rng.normal(size=(REFERENCE_ROWS, numeric))
    reference_codes = rng.integers(0, 5, size=(REFERENCE_ROWS, categorical))
    window_numeric = rng.normal(0.2, 1.1, size=(WINDOW_ROWS, numeric))
    window_codes = rng.integers(0, 6, size=(WINDOW_ROWS, categorical))
    profiles = [profile_series(pl.Series(f"n{i}", reference[:, i])) for i in range(numeric)]
    profiles += [
        profile_series(pl.Series(f"c{i}", reference_codes[:, i].astype(str)))
        for i in range(categorical)
    ]
    warm_up()
    window = DriftWindow(profiles, capacity=WINDOW_ROWS)
    layout = window.layout
    rows = np.column_stack(
        [
            window_numeric,
            *(layout.encode(f"c{i}", window_codes[:, i].astype(str)) for i in range(categorical)),
        ]
    )

    batch_s = _median(lambda: window.update(rows), args.repeats)

    def one_row_at_a_time() -> None:
        for index in range(200):
            window.update(rows[index : index + 1])

    single_s = _median(one_row_at_a_time, args.repeats)
    values_batch = rows.size / batch_s
    values_single = 200 * rows.shape[1] / single_s
    counts = window.counts()
    stats_s = _median(lambda: layout.statistics(counts), args.repeats * 5)
    detector = DriftDetector()
    rows_seen = window.count
    verdict_s = _median(
        lambda: detector.evaluate(layout.statistics(counts), rows_seen=rows_seen), args.repeats * 5
    )

    scipy_s = _median(
        lambda: _scipy_peer(reference, reference_codes, window_numeric, window_codes),
        max(3, args.repeats // 2),
    )
    evidently_s = _evidently_peer(reference, window_numeric)

    speedup = scipy_s / stats_s
    rows_out: list[tuple[str, float | None, str]] = [
        ("window update, 1,000-row batches", values_batch / 1e6, "M values/s"),
        ("window update, one row per call", values_single / 1e6, "M values/s"),
        (f"statistics, {args.features} features", stats_s * 1e3, "ms"),
        (f"statistics + calibrated verdict, {args.features} features", verdict_s * 1e3, "ms"),
        (f"peer: scipy ks_2samp / chi2 + numpy PSI, {args.features} features", scipy_s * 1e3, "ms"),
        ("speed-up of statistics over the scipy peer", speedup, "x"),
    ]
    checks = [
        check("window update >= 10 M values/s (batches)", values_batch / 1e6, 10.0, at_least=True),
        check(
            f"all statistics for {args.features} features <= 1 ms",
            stats_s * 1e3,
            1.0,
            at_least=False,
        ),
    ]
    if evidently_s is not None:
        rows_out.append(("peer: Evidently DataDriftPreset", evidently_s * 1e3, "ms"))
        checks.append(check(">= 1000x Evidently", evidently_s / stats_s, 1000.0, at_least=True))
    return Report(
        scenario="drift",
        machine=machine,
        options={
            "features": args.features,
            "numeric": numeric,
            "categorical": categorical,
            "reference_rows": REFERENCE_ROWS,
            "window_rows": WINDOW_ROWS,
            "repeats": args.repeats,
            "cpu": args.cpu,
            "evidently": evidently_s is not None,
        },
        tables=[
            Table(
                title=f"drift monitor, median of {args.repeats} repeats, CPU {args.cpu}",
                columns=("measure", "value", "unit"),
                rows=tuple((name, value, unit) for name, value, unit in rows_out),
            )
        ],
        checks=checks,
    )


def _median(work: Callable[[], object], repeats: int) -> float:
    timings = []
    for _ in range(repeats):
        started = time.perf_counter()
        work()
        timings.append(time.perf_counter() - started)
    return statistics.median(timings)


def _scipy_peer(
    reference: np.ndarray, reference_codes: np.ndarray, window: np.ndarray, codes: np.ndarray
) -> None:
    from scipy import stats

    for index in range(reference.shape[1]):
        stats.ks_2samp(reference[:, index], window[:, index])
        edges = np.quantile(reference[:, index], np.linspace(0, 1, 11)[1:-1])
        expected = np.bincount(np.searchsorted(edges, reference[:, index]), minlength=10) + 0.5
        actual = np.bincount(np.searchsorted(edges, window[:, index]), minlength=10) + 0.5
        expected, actual = expected / expected.sum(), actual / actual.sum()
        np.sum((actual - expected) * np.log(actual / expected))
    for index in range(reference_codes.shape[1]):
        table = np.array(
            [
                np.bincount(reference_codes[:, index], minlength=6),
                np.bincount(codes[:, index], minlength=6),
            ]
        )
        stats.chi2_contingency(table[:, table.sum(axis=0) > 0])


def _evidently_peer(reference: np.ndarray, window: np.ndarray) -> float | None:
    """Seconds Evidently takes for the same numeric comparison, if it is installed."""
    try:
        import pandas as pd
        from evidently import Report as EvidentlyReport
        from evidently.presets import DataDriftPreset
    except ImportError:
        return None
    columns = [f"n{i}" for i in range(reference.shape[1])]
    current, baseline = (
        pd.DataFrame(window, columns=columns),
        pd.DataFrame(reference, columns=columns),
    )
    report = EvidentlyReport([DataDriftPreset()])
    return _median(lambda: report.run(current, baseline), 3)
