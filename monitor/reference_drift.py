"""How far apart two versions' training sets are, feature by feature, from their reference
profiles alone: the monitor's own drift statistics and tests, with version A's training set
as the reference and version B's as the window.

A profile keeps quantile bins, not values, so B's training set is laid out on A's bins
through B's profile read as a distribution (`registry.distribution`: mass spread evenly
inside each of its fine bins). Its counts are then exact at every cut point the two share
and within one of B's fine bins (about 1% of its mass) elsewhere; its mean and spread come
exactly from its mean and std. `WindowLayout.statistics` and `DriftDetector` then judge
them as they judge a live window: KS and chi-square with their p-values, corrected over the
features (Holm), and effect sizes over the drift lines (PSI, mean shift, std ratio, rates).
A retrain on shifted data thus shows before the new version serves a single call.
"""

from __future__ import annotations

import math
from typing import Literal

import msgspec
import numpy as np
import numpy.typing as npt

from monitor.detector import DriftDetector, FeatureAssessment
from monitor.drift_config import DriftConfig
from monitor.layout import FeatureStatistics, NumericStatistics, WindowCounts, WindowLayout
from registry.distribution import share_below
from registry.manifest import CategoricalProfile, FeatureProfile, NumericProfile, ReferenceProfile


class FeatureShift(msgspec.Struct, frozen=True, kw_only=True):
    """One feature of B's training set against A's. None where a figure does not apply."""

    name: str
    kind: Literal["numeric", "categorical"]
    psi: float | None  # over A's coarse (decile) bins or categories
    ks: float | None  # from A's fine bins
    js: float | None  # Jensen-Shannon, base 2
    mean_shift: float | None  # (B's mean - A's mean) / A's std
    std_ratio: float | None  # B's std / A's std
    out_of_range_rate: float | None  # B's values outside A's range, or categories A never had
    missing_rate_a: float
    missing_rate_b: float
    p_value: float | None  # the monitor's combined test of this feature (None: too few rows)
    large: tuple[str, ...]  # effects over the drift lines with a significant test: shifted
    reason: str  # in words


class ReferenceDrift(msgspec.Struct, frozen=True, kw_only=True):
    """Every feature the two training sets share, in A's order, and those they do not."""

    rows_a: int
    rows_b: int
    features: tuple[FeatureShift, ...]
    only_in_a: tuple[str, ...]
    only_in_b: tuple[str, ...]
    retyped: tuple[str, ...]  # numeric in one, categorical in the other: not compared
    rules: DriftConfig  # the lines and level `large` and `p_value` were held to


def reference_drift(
    a: ReferenceProfile, b: ReferenceProfile, config: DriftConfig | None = None
) -> ReferenceDrift:
    """B's training set against A's, feature by feature (under `config`'s lines)."""
    config = config or DriftConfig()
    theirs = {profile.name: profile for profile in b.features}
    pairs = [
        (mine, theirs[mine.name])
        for mine in a.features
        if mine.name in theirs and type(mine) is type(theirs[mine.name])
    ]
    ours = {profile.name for profile in a.features}
    retyped = tuple(
        p.name for p in a.features if p.name in theirs and type(p) is not type(theirs[p.name])
    )
    if not pairs:
        features: tuple[FeatureShift, ...] = ()
    else:
        layout = WindowLayout([mine for mine, _ in pairs])
        counts = layout.empty()
        for index, (_, other) in enumerate(pairs):
            _lay_out(layout, index, other, counts)
        statistics = layout.statistics(counts)
        # Persistence is about successive live windows; two training sets are one look.
        detector = DriftDetector(msgspec.structs.replace(config, persistence=1))
        assessment = detector.evaluate(statistics, rows_seen=0)
        features = tuple(
            _shift(mine, other, s, verdict)
            for (mine, other), s, verdict in zip(
                pairs, statistics, assessment.features, strict=True
            )
        )
    return ReferenceDrift(
        rows_a=a.rows,
        rows_b=b.rows,
        features=features,
        only_in_a=tuple(p.name for p in a.features if p.name not in theirs),
        only_in_b=tuple(p.name for p in b.features if p.name not in ours),
        retyped=retyped,
        rules=config,
    )


def _lay_out(layout: WindowLayout, index: int, other: FeatureProfile, counts: WindowCounts) -> None:
    """Write `other`'s values into `counts` row `index`, as a window in `layout`'s slots."""
    size = int(layout.sizes[index])
    row = counts.counts[index]
    row[size + 1] = _missing(other)
    if isinstance(other, CategoricalProfile):
        codes = {category: code for code, category in enumerate(layout.categories(other.name))}
        for category, count in other.frequencies.items():
            row[codes.get(category, size)] += count  # A never had it: the unseen slot
        return
    assert isinstance(other, NumericProfile)
    if other.count == 0:
        return
    # Window bin j is [union[j-1], union[j]): its share of B is the CDF's rise across it.
    below = share_below(other, layout.edges[index, :size])
    row[: size + 1] = _whole(np.diff(np.concatenate([[0.0], below, [1.0]])) * other.count)
    center, inv_scale = layout.centers[index], layout.inv_scales[index]
    shift = (other.mean - center) * inv_scale
    counts.sums[index, 0] = other.count * shift
    counts.sums[index, 1] = other.count * ((other.std * inv_scale) ** 2 + shift**2)


def _whole(masses: npt.NDArray[np.float64]) -> npt.NDArray[np.int64]:
    """Integer counts summing to round(sum(masses)), each its mass rounded down or up
    (largest remainders first), so no bin gains or loses a whole value by rounding."""
    floors = np.floor(masses)
    short = round(float(masses.sum() - floors.sum()))
    if short > 0:
        floors[np.argsort(floors - masses)[:short]] += 1
    whole: npt.NDArray[np.int64] = floors.astype(np.int64)
    return whole


def _missing(profile: FeatureProfile) -> int:
    """Missing values of the profiled column, from its count and missing rate."""
    if profile.missing_rate <= 0.0 or profile.missing_rate >= 1.0:
        return 0
    return round(profile.count / (1.0 - profile.missing_rate)) - profile.count


def _shift(
    mine: FeatureProfile, other: FeatureProfile, s: FeatureStatistics, verdict: FeatureAssessment
) -> FeatureShift:
    if isinstance(s, NumericStatistics):
        kind: Literal["numeric", "categorical"] = "numeric"
        ks, mean_shift, std_ratio = _figure(s.ks), _figure(s.mean_shift), _figure(s.std_ratio)
        outside = _figure(s.out_of_range_rate)
    else:
        kind, ks, mean_shift, std_ratio = "categorical", None, None, None
        outside = _figure(s.unseen_rate)
    return FeatureShift(
        name=mine.name,
        kind=kind,
        psi=_figure(s.psi),
        ks=ks,
        js=_figure(s.js),
        mean_shift=mean_shift,
        std_ratio=std_ratio,
        out_of_range_rate=outside,
        missing_rate_a=mine.missing_rate,
        missing_rate_b=other.missing_rate,
        p_value=_figure(verdict.p_value),
        large=verdict.large,
        reason=verdict.reason,
    )


def _figure(value: float) -> float | None:
    return None if math.isnan(value) else float(value)
