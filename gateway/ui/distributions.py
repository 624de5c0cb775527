"""A feature's reference and live distributions as shares over display bins, for charts.

Both come from counts, never from raw rows: the reference from its profile's fine bins, the
live window from the merged counts an evaluation judged. A numeric feature is shown in about
`DISPLAY_BINS` bins whose edges are cut points of both (the window bins against every fine
cut point, see `monitor.layout`), so each side folds into them exactly.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Final

import numpy as np

from gateway.ui.charts import Bars, Floats, Histogram
from monitor.layout import WindowCounts, WindowLayout
from registry.manifest import CategoricalProfile, NumericProfile

DISPLAY_BINS: Final = 20  # about a twentieth of the reference mass each
TARGETS: Final = np.arange(1, DISPLAY_BINS) / DISPLAY_BINS
# Display edges closer than this share of the reference range merge: a level of a discrete
# feature has a bin of its own `[v, next float after v)`, far too thin to draw.
MIN_GAP: Final = 0.01
MAX_CATEGORIES: Final = 12  # bars per chart; the rest add up to OTHER
# A numeric feature whose levels (values with a fine bin of their own) hold this share of
# the reference is drawn as bars per level: a flag has no density to speak of.
DISCRETE_MASS: Final = 0.9
OTHER: Final = "(other)"
UNSEEN: Final = "(unseen)"


def display_edges(profile: NumericProfile) -> Floats:
    """Edges from the reference minimum to its maximum at about every `DISPLAY_BINS`-th
    of the reference mass, each a fine cut point."""
    low, high = profile.min, profile.max
    if profile.count == 0 or not high > low:  # nothing, or a constant: one bin around it
        return np.array([low - 0.5, high + 0.5])
    fine = np.asarray(profile.fine_edges, dtype=np.float64)
    # The reference mass under each cut point (numpy's ufuncs and methods, not its slower
    # Python-level helpers: a page draws hundreds of these).
    below = np.asarray(profile.fine_counts[:-1], dtype=np.float64).cumsum() / profile.count
    picked = fine[np.minimum(below.searchsorted(TARGETS), fine.size - 1)]
    distinct = picked[np.concatenate(([True], picked[1:] != picked[:-1]))]
    # Too close to the ends or to the cut before: dropped. What stays is at least a gap from
    # the last kept cut (each is a gap from its own predecessor, which is no smaller).
    gap = (high - low) * MIN_GAP
    previous = np.concatenate(([low], distinct[:-1]))
    kept = distinct[
        (distinct - previous >= gap) & (distinct - low >= gap) & (high - distinct >= gap)
    ]
    return np.concatenate(([low], kept, [high]))


def levels(profile: NumericProfile) -> Floats:
    """The levels of a discrete numeric feature, if it is one and has few enough to draw
    as bars (else none): values whose fine bin is `[v, next float after v)`."""
    fine = np.asarray(profile.fine_edges, dtype=np.float64)
    if fine.size < 2:
        return fine[:0]
    (single,) = np.nonzero(fine[1:] == np.nextafter(fine[:-1], np.inf))
    mass = sum(profile.fine_counts[index + 1] for index in single.tolist())
    if 0 < single.size < MAX_CATEGORIES and mass >= DISCRETE_MASS * profile.count:
        return fine[single]
    return fine[:0]


def reference_levels(profile: NumericProfile, values: Floats) -> dict[str, float]:
    """The reference's share of each level (`levels(profile)`), the rest as `OTHER`."""
    fine = np.asarray(profile.fine_edges, dtype=np.float64)
    bins = fine.searchsorted(values, side="left") + 1  # the bin starting at the level
    total = max(profile.count, 1)
    shares = {
        _level(v): profile.fine_counts[b] / total
        for v, b in zip(values.tolist(), bins.tolist(), strict=True)
    }
    shares[OTHER] = max(0.0, 1.0 - sum(shares.values()))
    return shares


def live_levels(
    layout: WindowLayout, counts: WindowCounts, feature: int, values: Floats
) -> tuple[dict[str, float], int]:
    """A discrete feature's window: each level's share, the rest (other values, and values
    out of the reference range) as `OTHER`; and the values present."""
    size = int(layout.sizes[feature])
    row = counts.counts[feature, : size + 1]
    present = int(row.sum())
    total = max(present, 1)
    # Every level is a window cut point too: its window bin is the one starting there.
    bins = layout.edges[feature, :size].searchsorted(values, side="left") + 1
    shares = {
        _level(v): float(row[b]) / total
        for v, b in zip(values.tolist(), bins.tolist(), strict=True)
    }
    shares[OTHER] = max(0.0, 1.0 - sum(shares.values())) if present else 0.0
    return shares, present


def _level(value: float) -> str:
    return f"{value:.6g}"


def reference_histogram(
    profile: NumericProfile, edges: Floats, name: str = "reference"
) -> Histogram:
    """The reference's shares over `edges` (from `display_edges(profile)`)."""
    fine = np.asarray(profile.fine_edges, dtype=np.float64)
    # Fine bin i starts at fine[i - 1] (the first at -inf, holding values from the minimum).
    starts = np.concatenate([[-np.inf], fine])
    bins = edges[1:-1].searchsorted(starts, side="right")
    counts = np.bincount(bins, weights=profile.fine_counts, minlength=edges.size - 1)
    total = max(profile.count, 1)
    return Histogram(name=name, edges=edges, shares=counts / total, count=profile.count)


def live_histogram(
    layout: WindowLayout, counts: WindowCounts, feature: int, edges: Floats, name: str = "live"
) -> Histogram:
    """A numeric feature's window (feature index `feature` of `layout`) over `edges`.

    Window bin 0 holds values under the reference minimum and the last (before the missing
    slot) values over its maximum: they are the histogram's `below` and `above`.
    """
    size = int(layout.sizes[feature])
    row = counts.counts[feature, : size + 1]
    present = int(row.sum())
    if size == 0:  # no reference values: one bin holds everything
        shares = np.array([1.0 if present else 0.0])
        return Histogram(name=name, edges=edges[[0, -1]], shares=shares, count=present)
    starts = layout.edges[feature, : size - 1]  # window bin j (1 <= j < size) starts at j - 1
    bins = edges[1:-1].searchsorted(starts, side="right")
    inside = np.bincount(bins, weights=row[1:size], minlength=edges.size - 1)
    total = max(present, 1)
    return Histogram(
        name=name,
        edges=edges,
        shares=inside / total,
        below=float(row[0]) / total,
        above=float(row[size]) / total,
        count=present,
    )


def reference_shares(profile: CategoricalProfile) -> dict[str, float]:
    """Each category's share of the reference."""
    total = max(profile.count, 1)
    return {value: count / total for value, count in profile.frequencies.items()}


def live_shares(
    layout: WindowLayout, counts: WindowCounts, feature: int
) -> tuple[dict[str, float], int]:
    """Each category's share of a categorical feature's window, values the reference never
    showed as `UNSEEN`; and the values present."""
    categories = layout.categories(layout.names[feature])
    row = counts.counts[feature, : len(categories) + 1]
    present = int(row.sum())
    total = max(present, 1)
    shares = {category: float(row[code]) / total for code, category in enumerate(categories)}
    shares[UNSEEN] = float(row[len(categories)]) / total
    return shares, present


def category_bars(
    series: Sequence[tuple[str, Mapping[str, float], int]],
) -> tuple[list[str], list[Bars]]:
    """The categories to draw and each series' bars over them, from (name, shares, count).

    At most `MAX_CATEGORIES`: those with the largest share in any series, in the first
    series' order; the rest add up to `OTHER`. `UNSEEN` shows only where some series has it.
    """
    order: dict[str, float] = {}
    for _, shares, count in series:
        for category, share in shares.items():
            if count and (share > 0 or category != UNSEEN):
                order[category] = max(order.get(category, 0.0), share)
    shown = list(order)
    if len(shown) > MAX_CATEGORIES:
        largest = set(sorted(shown, key=order.__getitem__, reverse=True)[: MAX_CATEGORIES - 1])
        shown = [category for category in shown if category in largest]
    kept = set(shown)
    rest = [category for category in order if category not in kept]
    categories = shown + ([OTHER] if rest else [])
    bars = [
        Bars(
            name=name,
            shares=tuple(shares.get(category, 0.0) for category in shown)
            + ((sum(shares.get(category, 0.0) for category in rest),) if rest else ()),
            count=count,
        )
        for name, shares, count in series
    ]
    return categories, bars
