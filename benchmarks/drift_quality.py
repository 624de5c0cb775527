"""Drift detector quality on real data: false alarms, power, delay and blame, against scipy.

Data: real sets shipped inside installed packages (scikit-learn's breast_cancer, digits,
diabetes, wine; statsmodels' randhie and fair), loaded offline. Each is split at random
(fixed seeds) into a reference half and a live half, `--splits` times, the draws spread over
the splits so that no one lucky or unlucky split decides a rate. Each reference half is
registered as a user would (float64 CSV, a scikit-learn pipeline exported to ONNX with an
FP32 input), so the profile is production's. Live rows go as an FP32 client sends them
through the gateway's own row path (`RowExtractor`: the float32 values, plus the PCA
reconstruction error where the profile watches one) into a `DriftWindow` of n rows over the
version's input profiles, judged by a `DriftDetector`.

Per data set and window size n, where the live half holds n rows (windows drawn with
replacement from a smaller half vary around that half, not the population, so every test
would reject too often) and the reference half reaches the detector's `min_samples`:

- clean controls: the share of one-shot windows at warn or worse, and, on clean streams
  through a sliding window evaluated every n/5 rows, the evaluations at `drift`;
- power: the share of windows at warn or worse under each shift (benchmarks/shifts.py),
  one evaluation of a fresh detector; the shifted feature is drawn at random per window
  among non-constant ones, and results are split by whether it is tied (its commonest
  reference value holds 10% or more of the values) or continuous;
- blame precision: of the input features flagged (warn or drift), the share actually
  shifted (the PCA error column is counted apart: how often it flagged);
- detection delay: clean rows, then shifted rows; a sliding window of n evaluated every
  n/10 rows; rows after the change until `drift`, and until the first warn (medians;
  given up after 5 n rows). A stream's correlation break shuffles each column within each
  block of n/10 new rows.

Peer: scipy.stats.ks_2samp per feature (the float32-cast reference half against the same
windows), Bonferroni over features at the detector's alpha; NaN dropped, +inf a value.
Streams draw each next row from the live rows not already in the window, so each window
holds distinct rows; only covariate-shift windows whose pool is under n repeat rows.
"""

from __future__ import annotations

import argparse
import copy
import functools
import inspect
import tempfile
import zlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
import numpy.typing as npt

from benchmarks.drift_quality_tables import GROUPS, WHO, build_report
from benchmarks.report import Cell, Report, machine_info
from benchmarks.shifts import CLEAN, SHIFTS, RowSource, Shift, apply, top_third

if TYPE_CHECKING:
    from benchmarks.datasets import Dataset
    from monitor import DriftAssessment, DriftDetector, FeatureStatistics
    from monitor.sampling import RowExtractor
    from registry import FeatureProfile

PACKAGES = ("numpy", "numba", "polars", "scipy", "scikit-learn", "skl2onnx", "statsmodels")
DATASETS = ("breast_cancer", "digits", "diabetes", "randhie", "fair")
SIZES = (100, 500, 2000)
TIED = 0.1  # a feature whose commonest reference value holds this share or more is tied
CLEAN_EVALUATIONS = 50  # per clean stream, one every n/5 rows
CLEAN_PREFIX = 5  # clean evaluations of a delay stream before the change, one every n/10
FLAGGED = ("warn", "drift")
# Windows flagged; input features flagged, and those shifted; windows whose PCA error column
# (production's multivariate "feature", not an input) was flagged.
COUNTS = ("alarms", "flagged", "blamed", "multivariate")
DELAY_CAP = 5  # windows' worth of shifted rows before a delay stream gives up
Floats = npt.NDArray[np.float64]
Result = dict[str, Any]


class Prepared(NamedTuple):
    """One data set, split and registered."""

    name: str
    profiles: tuple[FeatureProfile, ...]  # what the input window watches, as in production
    extractor: RowExtractor  # the gateway's request-to-row path
    reference: Floats  # the reference half as an FP32 client sends it, for the peer
    live: Floats  # the live half, float64 as loaded
    means: Floats  # the reference profile's mean and std of each feature
    stds: Floats
    candidates: npt.NDArray[np.int64]  # features a shift may hit: the non-constant ones
    tied: npt.NDArray[np.bool_]  # per feature: commonest reference value >= TIED of them


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of the drift-quality scenario."""
    parser.add_argument("--draws", type=int, default=50, help="windows per cell (default 50)")
    parser.add_argument(
        "--sizes", type=int, nargs="+", default=list(SIZES), help="window sizes (%(default)s)"
    )
    parser.add_argument(
        "--datasets", nargs="+", default=list(DATASETS), help="%(default)s; also: wine"
    )
    parser.add_argument(
        "--splits", type=int, default=5, help="random halvings, draws spread over them (5)"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of every draw (default 0)")


def run(args: argparse.Namespace) -> Report:
    """Measure every data set at every size; see the module docstring."""
    from benchmarks import datasets
    from benchmarks.scenario import BenchmarkError
    from monitor import DriftConfig, warm_up

    unknown = sorted(set(args.datasets) - set(datasets.LOADERS))
    if unknown or args.draws < 2 or min(args.sizes) < 10 or args.splits < 1:
        raise BenchmarkError(
            f"--datasets from {sorted(datasets.LOADERS)} (not {unknown}), --draws >= 2, "
            "--sizes >= 10, --splits >= 1"
        )
    machine = machine_info(PACKAGES)
    warm_up()
    config = DriftConfig()
    clean_streams, delay_streams = max(2, args.draws // 10), max(2, args.draws // 5)
    cells: dict[tuple[str, int, str], Result] = {}
    not_run: list[tuple[Cell, ...]] = []
    with tempfile.TemporaryDirectory(prefix="drift-quality-") as tmp:
        for name in args.datasets:
            dataset = datasets.load(name)
            for split in range(args.splits):
                directory = Path(tmp) / name / str(split)
                prepared = _prepare(dataset, directory, args.seed, split)
                for n in sorted(set(args.sizes)):
                    why = _not_runnable(prepared, n, config.min_samples)
                    if why:
                        not_run += [(name, n, why)] if split == 0 else []
                        continue
                    rng = np.random.default_rng([args.seed, zlib.crc32(name.encode()), split, n])
                    draws, clean, delay = (
                        _part(total, args.splits, split)
                        for total in (args.draws, clean_streams, delay_streams)
                    )
                    for result in _measure(prepared, n, draws, clean, delay, config.alpha, rng):
                        _merge(cells, result)
    options = {
        "draws": args.draws,
        "sizes": sorted(set(args.sizes)),
        "datasets": list(args.datasets),
        "seed": args.seed,
        "alpha": config.alpha,
        "tied_share": TIED,
        "splits": args.splits,
        "clean_streams": clean_streams,
        "clean_evaluations": CLEAN_EVALUATIONS,
        "delay_streams": delay_streams,
        "delay_cap_windows": DELAY_CAP,
    }
    return build_report(machine, options, list(cells.values()), not_run)


def judge(
    detector: DriftDetector, stats: Sequence[FeatureStatistics], rows_seen: int
) -> DriftAssessment:
    """The benchmark's one call of the detector; `rows_seen` goes where `evaluate` takes it."""
    evaluate: Callable[..., DriftAssessment] = detector.evaluate
    if _takes_rows_seen():
        return evaluate(stats, rows_seen=rows_seen)
    return evaluate(stats)


@functools.cache
def _takes_rows_seen() -> bool:
    from monitor import DriftDetector

    return "rows_seen" in inspect.signature(DriftDetector.evaluate).parameters


def _prepare(dataset: Dataset, directory: Path, seed: int, split: int) -> Prepared:
    from benchmarks.datasets import register_reference
    from monitor import WindowLayout
    from monitor.sampling import RowExtractor, input_profiles
    from registry import NumericProfile

    rng = np.random.default_rng([seed, zlib.crc32(dataset.name.encode()), split])
    order = rng.permutation(len(dataset.data))
    half = len(order) // 2
    manifest = register_reference(dataset, order[:half], directory, seed=seed)
    profiles = input_profiles(manifest)
    outputs = WindowLayout(manifest.profile.outputs)
    numeric = [p if isinstance(p, NumericProfile) else None for p in manifest.profile.features]
    stds = np.array([p.std if p else 0.0 for p in numeric])
    reference = dataset.data[order[:half]].astype(np.float32).astype(np.float64)
    return Prepared(
        name=dataset.name,
        profiles=profiles,
        extractor=RowExtractor(manifest, WindowLayout(profiles), outputs),
        reference=reference,
        live=dataset.data[order[half:]],
        means=np.array([p.mean if p else 0.0 for p in numeric]),
        stds=stds,
        candidates=np.flatnonzero(stds > 0).astype(np.int64),
        tied=np.array([_commonest_share(column) >= TIED for column in reference.T]),
    )


def _commonest_share(values: Floats) -> float:
    return float(np.unique(values, return_counts=True)[1].max() / len(values))


def _served(prepared: Prepared, rows: Floats) -> Floats:
    """The window's rows for `rows` sent by an FP32 client, through the gateway's own path:
    float32 values read as float64, then any watched multivariate column (PCA error)."""
    return prepared.extractor.input_rows({"input": rows.astype(np.float32)})


def _not_runnable(prepared: Prepared, n: int, min_samples: int) -> str:
    if len(prepared.reference) < min_samples:
        return f"reference half {len(prepared.reference)} rows < min_samples {min_samples}"
    if len(prepared.live) < n:
        return f"live half {len(prepared.live)} rows < n"
    return ""


def _part(total: int, parts: int, index: int) -> int:
    """Part `index` of `total` spread over `parts` as evenly as integers allow."""
    return total // parts + (index < total % parts)


def _merge(cells: dict[tuple[str, int, str], Result], result: Result) -> None:
    """Add one split's `result` to the cell of its data set, size and shift."""
    key = (result["dataset"], result["n"], result["shift"])
    cell = cells.get(key)
    if cell is None:
        cells[key] = copy.deepcopy(result)
        return
    for group, counts in result["groups"].items():
        cell["groups"][group]["windows"] += counts["windows"]
        for who in WHO:
            for field, value in counts[who].items():
                cell["groups"][group][who][field] += value
    cell["resampled"] = cell["resampled"] or result["resampled"]
    if "delays" in result:
        cell["delays"] += result["delays"]
    if "streams" in result:
        for field, value in result["streams"].items():
            cell["streams"][field] += value
        cell["prefix_drift"] += result["prefix_drift"]


def _measure(
    prepared: Prepared,
    n: int,
    draws: int,
    clean_streams: int,
    delay_streams: int,
    alpha: float,
    rng: Any,
) -> list[Result]:
    """One split of a data set at window size n: every shift's windows, and its streams."""
    results = [_windows(prepared, n, draws, alpha, shift, rng) for shift in (CLEAN, *SHIFTS)]
    clean = [_stream(prepared, n, n // 5, CLEAN, rng).before for _ in range(clean_streams)]
    results[0]["streams"] = {
        "evaluations": sum(map(len, clean)),
        "warn": sum(statuses.count("warn") for statuses in clean),
        "drift": sum(statuses.count("drift") for statuses in clean),
    }
    prefix_drift = 0
    for result, shift in zip(results[1:], SHIFTS, strict=True):
        result["delays"] = []
        for _ in range(delay_streams):
            run = _stream(prepared, n, n // 10, shift, rng)
            prefix_drift += run.before.count("drift")
            result["delays"].append(
                {"group": GROUPS[run.tied], "rows": run.drift, "warn": run.warn}
            )
    results[0]["prefix_drift"] = prefix_drift
    return results


def _windows(
    prepared: Prepared, n: int, draws: int, alpha: float, shift: Shift, rng: Any
) -> Result:
    """`draws` one-shot windows of n live rows under `shift`, judged by both detectors."""
    from scipy import stats

    from monitor import DriftDetector, DriftWindow

    window = DriftWindow(prepared.profiles, capacity=n, max_panes=1)
    size, features = prepared.live.shape
    level = alpha / features  # Bonferroni
    groups: dict[str, dict[str, Any]] = {
        group: {"windows": 0, **{who: dict.fromkeys(COUNTS, 0) for who in WHO}} for group in GROUPS
    }
    resampled = False
    for _ in range(draws):
        feature = int(rng.choice(prepared.candidates))
        if shift.kind == "covariate":
            pool = top_third(prepared.live[:, feature], rng)
            resampled = resampled or len(pool) < n
            rows = prepared.live[rng.choice(pool, n, replace=len(pool) < n)]
        else:
            rows = prepared.live[rng.choice(size, n, replace=False)]
            rows = _shifted(prepared, shift, rows, feature, rng)
        served = _served(prepared, rows)
        window.update(served)
        assessment = judge(DriftDetector(), window.statistics(), n)
        ours = [i for i, f in enumerate(assessment.features) if f.status in FLAGGED]
        group = groups[GROUPS[int(prepared.tied[feature])]]
        group["windows"] += 1
        group["driftgate"]["alarms"] += assessment.status in FLAGGED
        group["driftgate"]["multivariate"] += ours[-1:] == [features]  # the PCA error column
        peer = []
        for index in range(features):
            column = served[:, index]
            column = column[~np.isnan(column)]  # as alibi-detect does; +inf stays a value
            if column.size and stats.ks_2samp(prepared.reference[:, index], column).pvalue <= level:
                peer.append(index)
        group["peer"]["alarms"] += bool(peer)
        for who, flagged in zip(WHO, ([i for i in ours if i < features], peer), strict=True):
            group[who]["flagged"] += len(flagged)
            group[who]["blamed"] += flagged.count(feature)
    return {
        "dataset": prepared.name,
        "n": n,
        "shift": shift.name,
        "resampled": resampled,
        "groups": groups,
    }


class _Run(NamedTuple):
    """What one stream showed."""

    before: list[str]  # statuses before the change (a clean stream: all of them)
    warn: int | None  # rows from the change to warn or worse; None: never
    drift: int | None  # rows from the change to drift; None: not within the cap
    tied: bool  # whether the shifted feature is tied


def _stream(prepared: Prepared, n: int, step: int, shift: Shift, rng: Any) -> _Run:
    """One stream through a sliding window of n, evaluated every `step` rows.

    Clean: CLEAN_EVALUATIONS evaluations. Otherwise CLEAN_PREFIX clean evaluations after
    the first, then shifted rows until `drift` or DELAY_CAP windows' worth of them.
    """
    from monitor import DriftDetector, DriftWindow

    window = DriftWindow(prepared.profiles, capacity=n, max_panes=1)
    detector = DriftDetector()
    source = RowSource(len(prepared.live), n, rng)
    everything = np.arange(len(prepared.live), dtype=np.int64)
    feature = int(rng.choice(prepared.candidates))
    tied = bool(prepared.tied[feature])
    pool = top_third(prepared.live[:, feature], rng) if shift.kind == "covariate" else everything
    clean = shift is CLEAN
    change = n + (CLEAN_EVALUATIONS - 1 if clean else CLEAN_PREFIX) * step
    limit = change if clean else change + DELAY_CAP * n
    before: list[str] = []
    warned: int | None = None
    rows_seen = 0
    while rows_seen < limit:
        count = step if rows_seen else n
        if rows_seen < change:
            rows = prepared.live[source.draw(everything, count)]
        else:
            rows = _shifted(prepared, shift, prepared.live[source.draw(pool, count)], feature, rng)
        window.update(_served(prepared, rows))
        rows_seen += count
        status = judge(detector, window.statistics(), rows_seen).status
        if rows_seen <= change:
            before.append(status)
            continue
        if warned is None and status in FLAGGED:
            warned = rows_seen - change
        if status == "drift":
            return _Run(before, warned, rows_seen - change, tied)
    return _Run(before, warned, None, tied)


def _shifted(prepared: Prepared, shift: Shift, rows: Floats, feature: int, rng: Any) -> Floats:
    mean, std = prepared.means[feature], prepared.stds[feature]
    return apply(shift, rows, feature, mean=mean, std=std, rng=rng)
