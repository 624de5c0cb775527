"""A numeric reference profile read as a distribution: its CDF, its quantiles, and samples.

A profile keeps about 100 quantile bins with their counts and the reference's minimum and
maximum, never the values. Read as a histogram whose mass is spread evenly inside each bin
(from the minimum to the first cut point, between cut points, from the last one to the
maximum), it has a piecewise-linear CDF, exact at every cut point, and the inverse of that
CDF, its quantile function. Comparing two versions' training sets needs the first
(`monitor.reference_drift`); a background sample for explanations needs the second, so that
neither keeps training data around.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from registry.manifest import NumericProfile

Floats = npt.NDArray[np.float64]


def _knots(profile: NumericProfile) -> tuple[Floats, Floats]:
    """The CDF's corners (x, F(x)): 0 at the minimum, the share of values below each cut
    point, 1 just past the maximum (bins are closed on the left, so the maximum is inside)."""
    edges = np.asarray(profile.fine_edges, dtype=np.float64)
    counts = np.asarray(profile.fine_counts, dtype=np.float64)
    x = np.concatenate([[profile.min], edges, [np.nextafter(profile.max, np.inf)]])
    shares = np.concatenate([[0.0], np.cumsum(counts) / counts.sum()])
    # A cut point can sit at the minimum or just past the maximum (a level of a discrete
    # feature); the knots then repeat with equal shares, which interpolation reads alike.
    return x, shares


def share_below(profile: NumericProfile, x: npt.ArrayLike) -> Floats:
    """The share of the profiled values below each `x` (the CDF, left-continuous).

    Raises:
        ValueError: The profile holds no values.
    """
    _require_values(profile)
    knots, shares = _knots(profile)
    return np.interp(np.asarray(x, dtype=np.float64), knots, shares, left=0.0, right=1.0)


def quantiles(profile: NumericProfile, levels: npt.ArrayLike) -> Floats:
    """The value below which each share in `levels` (from [0, 1]) of the profiled values
    lie, clipped to the reference's range.

    Raises:
        ValueError: The profile holds no values.
    """
    _require_values(profile)
    knots, shares = _knots(profile)
    levels = np.asarray(levels, dtype=np.float64)
    values = np.interp(levels, shares, knots)
    # A level of a discrete feature has a bin one float wide, [v, next float after v): its
    # values are all v, which interpolating inside the bin would round to either end.
    segment = np.clip(np.searchsorted(shares, levels, side="right") - 1, 0, knots.size - 2)
    left = knots[segment]
    values = np.where(knots[segment + 1] <= np.nextafter(left, np.inf), left, values)
    return np.clip(values, profile.min, profile.max)


def background(profiles: Sequence[NumericProfile], rows: int, seed: int) -> Floats:
    """`rows` rows [rows, len(profiles)] whose columns follow the profiles' distributions.

    A Latin hypercube: each column takes one value from each of `rows` equal-probability
    strata of its distribution, in a random order per column, so a small sample already
    has each feature's marginal (its mean within about one stratum's width) though not
    the features' correlations, which no profile records. A feature without values is
    NaN (missing). The same `seed` gives the same rows.
    """
    rng = np.random.default_rng(seed)
    table = np.full((rows, len(profiles)), np.nan)
    for column, profile in enumerate(profiles):
        levels = (rng.permutation(rows) + rng.random(rows)) / rows
        if profile.count:
            table[:, column] = quantiles(profile, levels)
    return table


def _require_values(profile: NumericProfile) -> None:
    if profile.count == 0:
        raise ValueError(f"feature {profile.name!r} has no values in its reference profile")
