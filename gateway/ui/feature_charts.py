"""A feature's charts: its reference against the live window, and a canary's outputs
against the stable version's. Numeric features are histograms, or bars per level where
they are discrete; categorical ones are bars per category."""

from __future__ import annotations

from gateway.ui import charts, distributions
from gateway.ui.charts import Chart
from monitor.layout import WindowCounts, WindowLayout
from registry.manifest import CategoricalProfile, FeatureProfile, NumericProfile

# A feature's live window: the layout and merged counts of its version, and its index.
Live = tuple[WindowLayout, WindowCounts, int]


def reference_and_live(title: str, profile: FeatureProfile, live: Live | None) -> Chart:
    """The reference distribution of `profile` with the live window's over it (`live`
    None: not evaluated yet, the reference alone)."""
    if isinstance(profile, CategoricalProfile):
        shares, present = distributions.live_shares(*live) if live else ({}, 0)
        reference = distributions.reference_shares(profile)
        return _bars(title, ("reference", reference, profile.count), ("live", shares, present))
    if (values := distributions.levels(profile)).size:
        shares, present = distributions.live_levels(*live, values) if live else ({}, 0)
        reference = distributions.reference_levels(profile, values)
        return _bars(title, ("reference", reference, profile.count), ("live", shares, present))
    edges = distributions.display_edges(profile)
    window = (
        distributions.live_histogram(*live, edges)
        if live
        else charts.Histogram(name="live", edges=edges, shares=edges[1:] * 0.0, count=0)
    )
    return charts.histogram(title, [distributions.reference_histogram(profile, edges), window])


def stable_and_canary(
    title: str, stable: tuple[FeatureProfile, Live], canary: tuple[FeatureProfile, Live]
) -> Chart | None:
    """One output of two versions over the same time, each in its own reference's bins
    (on one value axis); None where the two disagree on its kind."""
    (mine, window), (theirs, other) = canary, stable
    if isinstance(mine, NumericProfile) and isinstance(theirs, NumericProfile):
        return charts.histogram(
            title,
            [
                distributions.live_histogram(
                    *other, distributions.display_edges(theirs), name="stable"
                ),
                distributions.live_histogram(
                    *window, distributions.display_edges(mine), name="canary"
                ),
            ],
        )
    if isinstance(mine, CategoricalProfile) and isinstance(theirs, CategoricalProfile):
        stable_shares, stable_count = distributions.live_shares(*other)
        canary_shares, canary_count = distributions.live_shares(*window)
        return _bars(
            title, ("stable", stable_shares, stable_count), ("canary", canary_shares, canary_count)
        )
    return None


def _bars(
    title: str,
    first: tuple[str, dict[str, float], int],
    second: tuple[str, dict[str, float], int],
) -> Chart:
    categories, bars = distributions.category_bars([first, second])
    return charts.grouped_bars(title, categories, bars)
