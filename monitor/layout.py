"""How one model version's features map onto count slots, and counts onto statistics.

A numeric feature is binned once, against the union of its reference profile's fine and
coarse cut points and the reference minimum and maximum. Every fine, coarse and out-of-range
bin is then a union of these bins, so one count per value serves KS, PSI and the range check,
and counts taken anywhere (threads, workers, replicas) add up exactly.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import NamedTuple

import msgspec
import numpy as np
import numpy.typing as npt

from monitor import divergences as dv
from monitor.kernels import CATEGORICAL, NUMERIC
from registry.manifest import CategoricalProfile, FeatureProfile, NumericProfile

Floats = npt.NDArray[np.float64]
Ints = npt.NDArray[np.int64]

# PSI's pseudo-count per bin: the Jeffreys prior, small enough not to mask a real change in
# a 10-bin histogram of 100 samples, large enough that an empty bin stays finite.
PSI_PSEUDO_COUNT = 0.5
# Cochran's rule: Pearson's chi-square is trusted where every bin expects 5 or more.
MIN_EXPECTED = 5.0
# Each tail of a numeric feature: the reference's lowest and highest 5% (in fine bins).
TAIL_SHARE = 0.05


class NumericStatistics(
    msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True, tag="numeric"
):
    """A numeric feature's window against its reference; NaN where a side has no values."""

    name: str
    count: int  # non-missing values in the window
    reference_count: int
    missing: int  # missing (null or NaN) values in the window
    reference_missing: int
    missing_rate: float
    out_of_range: int  # values outside the reference [min, max]
    out_of_range_rate: float
    tail_rate: float  # share of values in the reference's lowest and highest 5% or beyond
    reference_tail_rate: float  # the same share in the reference (under 0.1 with ties)
    ks: float  # from fine bins; within max bin mass (about 0.01) under the exact statistic
    psi: float  # coarse bins, smoothed
    psi_bins: int  # coarse bins with reference mass: PSI's null has psi_bins - 1 dof
    js: float  # Jensen-Shannon divergence, base 2, coarse bins
    hellinger: float  # coarse bins
    chi_square: float  # Pearson's test of homogeneity over the coarse bins, sparse ones pooled
    chi_square_dof: int
    wasserstein: float  # W1 from fine-bin midpoints, in reference std
    mean_shift: float  # (window mean - reference mean) / reference std
    std_ratio: float  # window std / reference std (these three in raw units if std is 0)


class CategoricalStatistics(
    msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True, tag="categorical"
):
    """A categorical feature's window against its reference; NaN where a side is empty."""

    name: str
    count: int
    reference_count: int
    missing: int
    reference_missing: int
    missing_rate: float
    unseen: int  # values the reference never showed
    unseen_rate: float
    reference_singletons: int  # categories seen once: how often the new shows up (Good-Turing)
    psi: float
    psi_bins: int
    js: float
    hellinger: float
    chi_square: float  # Pearson's test of homogeneity, sparse categories pooled
    chi_square_dof: int


FeatureStatistics = NumericStatistics | CategoricalStatistics


class WindowCounts(msgspec.Struct, frozen=True, eq=False):
    """Counts of a set of samples: per feature, per slot, and sums of standardized values.

    `counts` is int64 [features, slots] and adds exactly; `sums` is float64 [features, 2]
    (sum of z and of z^2, z in reference std units) and adds up to rounding.
    """

    counts: Ints
    sums: Floats


class WindowLayout:
    """The bins of every feature of one model version, built from their reference profiles.

    Immutable once built; shared by the windows and mergers of that version.
    """

    def __init__(self, profiles: Sequence[FeatureProfile]) -> None:
        """Lay out `profiles`: a `ReferenceProfile`'s `features` (or `outputs`).

        Raises:
            ValueError: If two profiles have the same name.
        """
        self.profiles = tuple(profiles)
        self.names = tuple(profile.name for profile in self.profiles)
        if len(set(self.names)) < len(self.names):
            raise ValueError(f"feature names repeat: {self.names}")
        numeric = [p for p in self.profiles if isinstance(p, NumericProfile)]
        categorical = [p for p in self.profiles if isinstance(p, CategoricalProfile)]
        self._categories = {
            p.name: {value: code for code, value in enumerate(p.frequencies)} for p in categorical
        }
        bins = [_numeric_bins(p) if isinstance(p, NumericProfile) else None for p in self.profiles]
        self.kinds = np.array([CATEGORICAL if b is None else NUMERIC for b in bins], dtype=np.int64)
        self.sizes = np.array(
            [
                len(self._categories[p.name]) if b is None else b.union.size
                for p, b in zip(self.profiles, bins, strict=True)
            ],
            dtype=np.int64,
        )
        self.slots = int(self.sizes.max(initial=0)) + 2
        self.edges = _pad([np.empty(0) if b is None else b.union for b in bins], np.inf)
        self.centers = np.array([getattr(p, "mean", 0.0) for p in self.profiles], dtype=float)
        # A constant reference feature has std 0: measure its moments in raw units instead.
        self.inv_scales = np.array(
            [
                1.0 / p.std if isinstance(p, NumericProfile) and p.std > 0 else 1.0
                for p in self.profiles
            ],
            dtype=float,
        )
        self._numeric = np.flatnonzero(self.kinds == NUMERIC).astype(np.int64)
        numeric_bins = [b for b in bins if b is not None]
        self._ks_map = _pad([b.ks_map for b in numeric_bins], 0).astype(np.int64)
        self._ks_reference = _pad([b.ks_reference for b in numeric_bins], 0.0)
        self._ks_points = _pad([b.ks_points for b in numeric_bins], 0.0)
        self._ks_tail = _pad([b.ks_tail for b in numeric_bins], 0.0)
        self._coarse_map = _pad([b.coarse_map for b in numeric_bins], 0).astype(np.int64)
        self._coarse_reference = _pad([np.array(p.coarse_counts) for p in numeric], 0.0)
        self._categorical = np.flatnonzero(self.kinds == CATEGORICAL).astype(np.int64)
        # Reference counts per category, then 0 for the unseen bucket.
        self._categorical_reference = _pad(
            [np.array([*p.frequencies.values(), 0]) for p in categorical], 0.0
        )
        self._reference_missing = _reference_missing(self.profiles)
        self._reference_tail_rates = [
            _rate(float(b.ks_tail @ b.ks_reference), float(b.ks_reference.sum()))
            for b in numeric_bins
        ]

    def empty(self) -> WindowCounts:
        """Zero counts in this layout's shape."""
        return WindowCounts(
            np.zeros((len(self.names), self.slots), dtype=np.int64), np.zeros((len(self.names), 2))
        )

    def categories(self, feature: str) -> tuple[str, ...]:
        """The categories of `feature` in code order; code `len(result)` is "unseen"."""
        return tuple(self._categories[feature])

    def encode(self, feature: str, values: Iterable[object]) -> Floats:
        """Category codes of `values` for a categorical `feature`, as `update` expects them.

        Values compare by their text, as the reference profile stored them (`True` is
        "true", 3 is "3"); an integral float also matches the integer's text, since class
        labels often arrive as floats. None and NaN are missing (NaN), unknown values unseen.
        """
        codes = self._categories[feature]
        return np.fromiter((_code(value, codes) for value in values), dtype=np.float64)

    def statistics(self, counts: WindowCounts) -> tuple[FeatureStatistics, ...]:
        """Every feature's statistics from `counts` in this layout, in feature order."""
        numeric = dv.numeric_statistics(
            counts.counts,
            self._numeric,
            sizes=self.sizes,
            ks_map=self._ks_map,
            ks_reference=self._ks_reference,
            ks_points=self._ks_points,
            ks_tail=self._ks_tail,
            coarse_map=self._coarse_map,
            coarse_reference=self._coarse_reference,
            sums=counts.sums,
            inv_scales=self.inv_scales,
            pseudo_count=PSI_PSEUDO_COUNT,
            min_expected=MIN_EXPECTED,
        )
        categorical = dv.categorical_statistics(
            counts.counts,
            self._categorical,
            sizes=self.sizes,
            reference=self._categorical_reference,
            pseudo_count=PSI_PSEUDO_COUNT,
            min_expected=MIN_EXPECTED,
        )
        result: dict[int, FeatureStatistics] = {}
        tail_rates = self._reference_tail_rates
        for index, (feature, row) in enumerate(
            zip(self._numeric.tolist(), numeric.tolist(), strict=True)
        ):
            profile = self.profiles[feature]
            assert isinstance(profile, NumericProfile)
            result[feature] = NumericStatistics(
                name=profile.name,
                count=int(row[dv.COUNT]),
                reference_count=profile.count,
                missing=int(row[dv.MISSING]),
                reference_missing=self._reference_missing[feature],
                missing_rate=_rate(row[dv.MISSING], row[dv.COUNT] + row[dv.MISSING]),
                out_of_range=int(row[dv.OUTSIDE]),
                out_of_range_rate=_rate(row[dv.OUTSIDE], row[dv.COUNT]),
                tail_rate=_rate(row[dv.TAIL], row[dv.COUNT]),
                reference_tail_rate=tail_rates[index],
                ks=row[dv.KS],
                psi=row[dv.PSI],
                psi_bins=sum(1 for c in profile.coarse_counts if c > 0),
                js=row[dv.JS],
                hellinger=row[dv.HELLINGER],
                wasserstein=row[dv.WASSERSTEIN],
                mean_shift=row[dv.MEAN_SHIFT],
                std_ratio=row[dv.STD_RATIO],
                chi_square=row[dv.CHI_SQUARE],
                chi_square_dof=int(row[dv.CHI_SQUARE_DOF]),
            )
        for feature, row in zip(self._categorical.tolist(), categorical.tolist(), strict=True):
            profile = self.profiles[feature]
            assert isinstance(profile, CategoricalProfile)
            result[feature] = CategoricalStatistics(
                name=profile.name,
                count=int(row[dv.COUNT]),
                reference_count=profile.count,
                missing=int(row[dv.MISSING]),
                reference_missing=self._reference_missing[feature],
                missing_rate=_rate(row[dv.MISSING], row[dv.COUNT] + row[dv.MISSING]),
                unseen=int(row[dv.OUTSIDE]),
                unseen_rate=_rate(row[dv.OUTSIDE], row[dv.COUNT]),
                reference_singletons=sum(1 for c in profile.frequencies.values() if c == 1),
                chi_square=row[dv.CHI_SQUARE],
                chi_square_dof=int(row[dv.CHI_SQUARE_DOF]),
                psi=row[dv.PSI],
                psi_bins=len(profile.frequencies),
                js=row[dv.JS],
                hellinger=row[dv.HELLINGER],
            )
        return tuple(result[feature] for feature in range(len(self.profiles)))


class _Bins(NamedTuple):
    """How a numeric feature's window bins fold into its KS and coarse bins."""

    union: Floats  # cut points the window bins against
    ks_map: Ints  # window bin -> KS bin
    ks_reference: Floats  # reference count per KS bin
    ks_points: Floats  # where each KS bin's mass sits, for Wasserstein
    ks_tail: Floats  # 1 for KS bins in a reference tail (TAIL_SHARE each side), else 0
    coarse_map: Ints  # window bin -> coarse bin


def _numeric_bins(profile: NumericProfile) -> _Bins:
    """Cut the window's bins for `profile`, fine and coarse cut points and range ends together.

    KS bins are the fine bins with two more around them, below the reference minimum and
    above its maximum, where the reference has no mass. Window bin j covers
    `[union[j-1], union[j])`; its left end locates it in the fine and coarse bins, since
    every fine and coarse cut point is a union cut point.
    """
    fine = np.array(profile.fine_edges, dtype=np.float64)
    coarse = np.array(profile.coarse_edges, dtype=np.float64)
    if profile.count == 0:  # nothing to compare with: one bin, every statistic NaN
        nothing = np.zeros(3)
        return _Bins(np.empty(0), np.array([1]), nothing, nothing, nothing, np.array([0]))
    upper = np.nextafter(profile.max, np.inf)  # bins are closed on the left: > max is outside
    union = np.unique(np.concatenate([fine, coarse, [profile.min, upper]]))
    left = np.concatenate([[-np.inf], union])
    ks_map = 1 + np.searchsorted(fine, left, side="right")
    ks_map[0], ks_map[-1] = 0, fine.size + 2
    low = np.concatenate([[profile.min], fine])
    high = np.concatenate([fine, [profile.max]])
    reference = np.concatenate([[0.0], profile.fine_counts, [0.0]])
    # A bin is in a tail when all of it lies within the reference's outer TAIL_SHARE: ties
    # can leave a tail empty (half the values at the minimum), never make it heavier.
    share = reference / reference.sum()
    below, above = np.cumsum(share), np.cumsum(share[::-1])[::-1]
    tail = (below <= TAIL_SHARE + 1e-12) | (above <= TAIL_SHARE + 1e-12)
    return _Bins(
        union=union,
        ks_map=ks_map,
        ks_reference=reference,
        ks_points=np.concatenate([[profile.min], (low + high) / 2, [profile.max]]),
        ks_tail=tail.astype(np.float64),
        coarse_map=np.searchsorted(coarse, left, side="right"),
    )


def _reference_missing(profiles: Sequence[FeatureProfile]) -> list[int]:
    """Missing values per feature in the reference, from each profile's count and rate.

    A profile keeps its non-missing count and missing rate; the reference's row count is
    the same for all, so a feature missing everywhere takes it from the others.
    """
    totals = [
        round(p.count / (1.0 - p.missing_rate)) if p.missing_rate < 1.0 else None for p in profiles
    ]
    rows = max((total for total in totals if total is not None), default=0)
    return [
        (rows if total is None else total) - p.count
        for p, total in zip(profiles, totals, strict=True)
    ]


def _pad(rows: Sequence[npt.NDArray[np.generic]], fill: float) -> Floats:
    """Rows of different lengths as one C-contiguous 2-D array (at least 1 column)."""
    width = max((row.size for row in rows), default=0) or 1
    table = np.full((len(rows), width), fill, dtype=np.float64)
    for index, row in enumerate(rows):
        table[index, : row.size] = row
    return table


def _code(value: object, codes: dict[str, int]) -> float:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return math.nan
    if isinstance(value, bytes):
        value = value.decode(errors="replace")
    elif isinstance(value, bool | np.bool_):
        value = "true" if value else "false"  # as polars writes booleans as text
    elif isinstance(value, np.generic):
        value = value.item()
    code = codes.get(str(value))
    if code is None and isinstance(value, float) and value.is_integer():
        code = codes.get(str(int(value)))
    return float(len(codes) if code is None else code)


def _rate(part: float, whole: float) -> float:
    return part / whole if whole > 0 else math.nan
