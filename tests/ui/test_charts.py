"""The console's SVG charts and the distributions they draw: well-formed, accessible,
free of inline styles, escaped, and exactly the counts behind them."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import numpy as np
import polars as pl
import pytest

from gateway.ui import charts, distributions
from gateway.ui.charts import Bars, Chart, Histogram
from monitor import DriftWindow
from registry.manifest import CategoricalProfile, NumericProfile
from registry.profile import profile_series

SVG = "{http://www.w3.org/2000/svg}"
HOSTILE = '<script>alert("x")</script> & </title><img src=x onerror=alert(1)>'


def parse(chart: Chart) -> ET.Element:
    """The chart as XML, checked for what every chart must carry."""
    root = ET.fromstring(chart.svg)
    assert root.tag == f"{SVG}svg"
    assert root.get("role") == "img"
    assert root.get("aria-label") == chart.title
    assert root.find(f"{SVG}title") is not None
    assert root.find(f"{SVG}title").text == chart.title  # type: ignore[union-attr]
    assert root.get("viewBox")
    assert "style=" not in chart.svg
    assert "<style" not in chart.svg
    assert "<script" not in chart.svg
    names = series_names(root)
    assert int(root.get("data-series", "0")) == len(names) == len(chart.series)
    assert names == list(chart.series)
    for element in root.iter():
        if element.get("data-series-name") is not None:
            assert "series" in element.get("class", "").split()
    return root


def series_names(root: ET.Element) -> list[str]:
    """Distinct `data-series-name`s in document order, as the browser tests count them."""
    names: list[str] = []
    for element in root.iter():
        name = element.get("data-series-name")
        if name is not None and name not in names:
            names.append(name)
    return names


def group(root: ET.Element, name: str) -> ET.Element:
    return next(e for e in root.iter() if e.get("data-series-name") == name)


@pytest.fixture(scope="module")
def normal() -> NumericProfile:
    profile = profile_series(pl.Series("x", np.random.default_rng(1).normal(5.0, 2.0, 5000)))
    assert isinstance(profile, NumericProfile)
    return profile


def window_of(profile: NumericProfile | CategoricalProfile, rows: np.ndarray) -> DriftWindow:
    window = DriftWindow([profile], capacity=rows.shape[0] + 1)
    window.update(rows.reshape(-1, 1), now=1000.0)
    return window


def test_live_shares_equal_a_direct_histogram_of_the_rows(normal: NumericProfile) -> None:
    edges = distributions.display_edges(normal)
    assert 15 <= edges.size - 1 <= 20
    assert (edges[0], edges[-1]) == (normal.min, normal.max)
    values = np.random.default_rng(2).normal(6.0, 2.5, 3000)  # shifted and wider: some outside
    values[:10] = np.nan
    window = window_of(normal, values)
    live = distributions.live_histogram(window.layout, window.counts(), 0, edges)
    present = values[~np.isnan(values)]
    inside = present[(present >= normal.min) & (present <= normal.max)]
    expected = np.bincount(np.searchsorted(edges[1:-1], inside, side="right"), minlength=20)
    assert live.count == present.size
    np.testing.assert_allclose(live.shares * present.size, expected[: edges.size - 1])
    assert live.below * present.size == pytest.approx((present < normal.min).sum())
    assert live.above * present.size == pytest.approx((present > normal.max).sum())
    assert live.shares.sum() + live.below + live.above == pytest.approx(1.0)


def test_reference_shares_fold_the_fine_bins_exactly(normal: NumericProfile) -> None:
    edges = distributions.display_edges(normal)
    reference = distributions.reference_histogram(normal, edges)
    assert reference.shares.sum() == pytest.approx(1.0)
    # Quantile edges: every display bin holds about a twentieth of the reference.
    assert reference.shares.max() < 0.1
    assert reference.count == normal.count


def test_discrete_and_constant_features_have_no_empty_width_bins() -> None:
    rng = np.random.default_rng(3)
    flags = profile_series(pl.Series("flag", rng.integers(0, 2, 1000).astype(float)))
    counts = profile_series(pl.Series("counts", rng.poisson(1.0, 1000).astype(float)))
    constant = profile_series(pl.Series("constant", np.full(100, 7.0)))
    for profile in (flags, counts, constant):
        assert isinstance(profile, NumericProfile)
        edges = distributions.display_edges(profile)
        assert np.all(np.diff(edges) > 0), (profile.name, edges)
        reference = distributions.reference_histogram(profile, edges)
        assert reference.shares.sum() == pytest.approx(1.0)
        window = window_of(profile, np.array([profile.min, profile.max, profile.max + 1.0]))
        live = distributions.live_histogram(window.layout, window.counts(), 0, edges)
        assert live.shares.sum() == pytest.approx(2 / 3)
        assert live.above == pytest.approx(1 / 3)
        parse(charts.histogram(profile.name, [reference, live]))


def test_a_discrete_feature_is_counted_per_level() -> None:
    rng = np.random.default_rng(5)
    profile = profile_series(pl.Series("visits", rng.poisson(1.0, 2000).astype(float)))
    assert isinstance(profile, NumericProfile)
    values = distributions.levels(profile)
    assert values.tolist()[:3] == [0.0, 1.0, 2.0]
    reference = distributions.reference_levels(profile, values)
    assert reference["0"] == pytest.approx(np.exp(-1.0), abs=0.03)
    assert sum(reference.values()) == pytest.approx(1.0)
    window = window_of(profile, np.array([0.0, 0.0, 1.0, 2.0, 2.5, 99.0, np.nan]))
    live, present = distributions.live_levels(window.layout, window.counts(), 0, values)
    assert present == 6
    assert (live["0"], live["1"], live["2"]) == (2 / 6, 1 / 6, 1 / 6)
    assert live[distributions.OTHER] == pytest.approx(2 / 6)  # 2.5 and 99: no level
    normal = profile_series(pl.Series("x", rng.normal(size=2000)))
    assert isinstance(normal, NumericProfile)
    assert distributions.levels(normal).size == 0


def test_histogram_overlays_reference_and_live(normal: NumericProfile) -> None:
    edges = distributions.display_edges(normal)
    values = np.random.default_rng(4).normal(20.0, 1.0, 200)  # far above the reference
    window = window_of(normal, values)
    chart = charts.histogram(
        "x: reference and live window",
        [
            distributions.reference_histogram(normal, edges),
            distributions.live_histogram(window.layout, window.counts(), 0, edges),
        ],
    )
    root = parse(chart)
    assert chart.series == ("reference", "live")
    (outline,) = group(root, "reference").findall(f"{SVG}path")
    assert outline.get("d", "").count("H") == edges.size - 1  # one step per bin
    assert group(root, "live").get("class") == "series live"
    # Everything above the reference's maximum: one bar in the band right of the axis.
    (band,) = group(root, "live").findall(f"{SVG}rect")
    assert float(band.get("x", "0")) > charts.WIDTH - charts.RIGHT - charts.BAND
    assert band.find(f"{SVG}title").text == "live 100.0%"  # type: ignore[union-attr]
    assert chart.__html__() == chart.svg


def test_an_empty_window_draws_the_reference_and_says_so(normal: NumericProfile) -> None:
    edges = distributions.display_edges(normal)
    empty = Histogram(name="live", edges=edges, shares=np.zeros(edges.size - 1), count=0)
    chart = charts.histogram("x", [distributions.reference_histogram(normal, edges), empty])
    root = parse(chart)
    assert not list(group(root, "live"))
    assert "no live values yet" in chart.svg


def test_categories_beyond_the_limit_add_up_to_other() -> None:
    reference = {f"c{i}": (20 - i) / 210 for i in range(20)}
    live = {**{f"c{i}": 0.0 for i in range(20)}, "c19": 0.5, "c0": 0.5}
    live[distributions.UNSEEN] = 0.0
    categories, bars = distributions.category_bars(
        [("reference", reference, 210), ("live", live, 10)]
    )
    assert len(categories) == distributions.MAX_CATEGORIES
    assert categories[-1] == distributions.OTHER
    assert "c19" in categories  # small in the reference, half the live window
    assert distributions.UNSEEN not in categories  # no series saw an unseen value
    for bar in bars:
        assert sum(bar.shares) == pytest.approx(1.0)


def test_grouped_bars_escape_category_names() -> None:
    chart = charts.grouped_bars(
        f"{HOSTILE}: reference and live window",
        [HOSTILE, "b"],
        [
            Bars(name="reference", shares=(0.5, 0.5), count=10),
            Bars(name="live", shares=(0.9, 0.1), count=10),
        ],
    )
    root = parse(chart)
    assert "<script" not in chart.svg
    assert "<img" not in chart.svg
    assert root.get("aria-label", "").startswith(HOSTILE)
    texts = [t.text for t in root.iter(f"{SVG}title")]
    assert HOSTILE in texts  # the full name, escaped in the markup, reads back as it was
    assert len(group(root, "live").findall(f"{SVG}rect")) == 2


def test_status_strip_draws_a_row_per_series_and_merges_runs() -> None:
    times = [1000.0 + 10 * i for i in range(30)]
    version = ["ok"] * 10 + ["warn"] * 5 + ["drift"] * 15
    hostile = ["ok"] * 29 + ["warn"]
    chart = charts.status_strip(
        "drift status over time", times, [("version", version), (HOSTILE, hostile)]
    )
    root = parse(chart)
    assert chart.series == ("version", HOSTILE)
    runs = group(root, "version").findall(f"{SVG}rect")
    assert [r.get("class") for r in runs] == ["status-ok", "status-warn", "status-drift"]
    widths = [float(r.get("width", "0")) for r in runs]
    assert widths[2] == pytest.approx(3 * widths[1], rel=0.02)
    assert len(group(root, HOSTILE).findall(f"{SVG}rect")) == 2


def test_weight_steps_mark_each_evaluation_by_its_verdict() -> None:
    points = [(0.0, 5.0), (30.0, 25.0), (60.0, 25.0), (90.0, 0.0)]
    marks = [(30.0, 5.0, "pass"), (60.0, 25.0, "inconclusive"), (90.0, 25.0, "fail")]
    chart = charts.weight_steps("canary weight over time", points, marks, end=120.0)
    root = parse(chart)
    assert chart.series == ("weight", "evaluations")
    dots = group(root, "evaluations").findall(f"{SVG}circle")
    assert [d.get("class") for d in dots] == [
        "status-ok",
        "status-insufficient_data",
        "status-drift",
    ]
    path = group(root, "weight").find(f"{SVG}path")
    assert path is not None
    assert path.get("d", "").count("V") == 2  # a step at each change, none where it held
