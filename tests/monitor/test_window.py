"""Sliding windows and time panes: counts exactly right, statistics as documented."""

from __future__ import annotations

import msgspec
import numpy as np
import polars as pl
import pytest
from scipy import stats

from monitor import (
    CategoricalStatistics,
    DriftWindow,
    FeatureStatistics,
    NumericStatistics,
    WindowCounts,
    merge,
)
from registry.manifest import CategoricalProfile, NumericProfile
from registry.profile import profile_series

PANE = 10.0


@pytest.fixture(scope="module")
def reference() -> dict[str, np.ndarray]:
    """Reference columns: continuous, skewed, discrete with ties, and categorical."""
    rng = np.random.default_rng(10)
    n = 20_000
    return {
        "normal": rng.normal(3.0, 2.0, n),
        "skewed": rng.lognormal(0.0, 0.8, n),
        "counts": rng.poisson(2.0, n).astype(float),
        "color": rng.choice(["red", "green", "blue", "teal"], n, p=[0.5, 0.3, 0.15, 0.05]),
    }


@pytest.fixture(scope="module")
def profiles(reference: dict[str, np.ndarray]) -> list[NumericProfile | CategoricalProfile]:
    return [profile_series(pl.Series(name, values)) for name, values in reference.items()]


def sample_rows(
    window: DriftWindow, rng: np.random.Generator, n: int, shift: float = 0.0
) -> np.ndarray:
    """n rows like the reference (numeric columns shifted by `shift`), with missing values."""
    rows = np.column_stack(
        [
            rng.normal(3.0 + shift, 2.0, n),
            rng.lognormal(shift, 0.8, n),
            rng.poisson(2.0 + shift, n).astype(float),
            window.layout.encode(
                "color", rng.choice(["red", "green", "blue", "teal", "pink"], n,
                                    p=[0.5, 0.3, 0.14, 0.05, 0.01]).tolist()
            ),
        ]
    )  # fmt: skip
    rows[rng.random(rows.shape) < 0.02] = np.nan
    return rows


def fresh_counts(window: DriftWindow, rows: np.ndarray) -> np.ndarray:
    """The window's counts recomputed from scratch with numpy."""
    layout = window.layout
    counts = np.zeros((len(layout.names), layout.slots), dtype=np.int64)
    for f, size in enumerate(layout.sizes):
        column = rows[:, f]
        if f < 3:
            codes = np.searchsorted(layout.edges[f, :size], column, side="right")
        else:
            known = (column >= 0) & (column < size)
            codes = np.where(known, np.nan_to_num(column), size).astype(int)
        codes = np.where(np.isnan(column), size + 1, codes)
        counts[f, : size + 2] = np.bincount(codes, minlength=size + 2)
    return counts


def test_eviction_keeps_exactly_the_last_capacity_rows(profiles: list) -> None:
    rng = np.random.default_rng(11)
    window = DriftWindow(profiles, capacity=50)
    seen = np.empty((0, 4))
    for size in [1, 7, 49, 50, 51, 3, 120, 13, 200, 2]:
        batch = sample_rows(window, rng, size)
        window.update(batch, now=0.0)
        seen = np.concatenate([seen, batch])
        last = seen[-50:]
        assert window.count == len(last)
        np.testing.assert_array_equal(window.rows(), last)
        counts = window.counts()
        np.testing.assert_array_equal(counts.counts, fresh_counts(window, last))
        z = (last[:, 0] - profiles[0].mean) / profiles[0].std
        z = z[~np.isnan(z)]
        np.testing.assert_allclose(counts.sums[0], [z.sum(), (z * z).sum()], rtol=1e-9)


def test_merged_panes_equal_one_window_over_the_same_rows(profiles: list) -> None:
    rng = np.random.default_rng(12)
    window = DriftWindow(profiles, capacity=10_000, max_panes=20)
    # Two workers, each with its own window, splitting the same stream between them.
    workers = [DriftWindow(profiles, capacity=10, max_panes=20) for _ in range(2)]
    now = 1_700_000_000.0
    for step in range(40):
        now += rng.uniform(0.0, 4.0)
        batch = sample_rows(window, rng, int(rng.integers(1, 60)))
        window.update(batch, now=now)
        workers[step % 2].update(batch, now=now)
    panes = window.pane_counts()
    assert len(panes) > 5
    assert all(start % PANE == 0 for start in panes)
    merged = merge(panes.values())
    single = window.counts()
    np.testing.assert_array_equal(merged.counts, single.counts)
    np.testing.assert_allclose(merged.sums, single.sums, rtol=1e-12)
    everywhere = merge(part for worker in workers for part in worker.pane_counts().values())
    np.testing.assert_array_equal(everywhere.counts, single.counts)
    # Same counts, same statistics.
    for ours, theirs in zip(window.statistics(), window.layout.statistics(everywhere), strict=True):
        assert ours.name == theirs.name
        ours_values = [v for v in msgspec.structs.astuple(ours) if not isinstance(v, str)]
        their_values = [v for v in msgspec.structs.astuple(theirs) if not isinstance(v, str)]
        assert ours_values == pytest.approx(their_values, rel=1e-9, nan_ok=True)


def test_panes_roll_over_and_late_rows_join_the_newest_pane(profiles: list) -> None:
    rng = np.random.default_rng(13)
    window = DriftWindow(profiles, capacity=100, max_panes=3)
    for start in [0.0, 10.0, 20.0, 50.0]:
        window.update(sample_rows(window, rng, 5), now=start + 1.0)
    window.update(sample_rows(window, rng, 7), now=12.0)  # a clock stepped back
    panes = window.pane_counts()
    assert list(panes) == [10.0, 20.0, 50.0]
    assert [int(pane.counts[0].sum()) for pane in panes.values()] == [5, 5, 12]
    with pytest.raises(ValueError, match="nothing to merge"):
        merge([])


def test_statistics_match_direct_computations(profiles: list, reference: dict) -> None:
    rng = np.random.default_rng(14)
    window = DriftWindow(profiles, capacity=800)
    window.update(sample_rows(window, rng, 1000, shift=0.3), now=0.0)
    rows = window.rows()
    normal, skewed, _, color = window.statistics()
    assert isinstance(normal, NumericStatistics)
    assert isinstance(color, CategoricalStatistics)
    for stat, profile, column in [(normal, profiles[0], 0), (skewed, profiles[1], 1)]:
        values = rows[:, column][~np.isnan(rows[:, column])]
        assert stat.count == values.size
        assert stat.missing_rate == pytest.approx(1 - values.size / 800)
        assert stat.mean_shift == pytest.approx((values.mean() - profile.mean) / profile.std)
        assert stat.std_ratio == pytest.approx(values.std() / profile.std)
        outside = (values < profile.min) | (values > profile.max)
        assert stat.out_of_range_rate == pytest.approx(outside.mean())
        # KS within its bound of the exact two-sample statistic.
        exact = stats.ks_2samp(reference[profile.name], values).statistic
        masses = np.array(profile.fine_counts) / profile.count
        assert stat.ks <= exact + 1e-12 <= stat.ks + masses.max() + 2e-12
        # PSI and JS equal numpy on the same coarse counts.
        edges = np.array(profile.coarse_edges)
        r = np.array(profile.coarse_counts, dtype=float)
        w = np.bincount(np.searchsorted(edges, values, "right"), minlength=r.size).astype(float)
        used = (r + w) > 0
        p = (r[used] + 0.5) / (r.sum() + 0.5 * used.sum())
        q = (w[used] + 0.5) / (w.sum() + 0.5 * used.sum())
        assert stat.psi == pytest.approx(np.sum((q - p) * np.log(q / p)))
        p, q = r / r.sum(), w / w.sum()
        m = (p + q) / 2
        js = stats.entropy(p, m, base=2) / 2 + stats.entropy(q, m, base=2) / 2
        assert stat.js == pytest.approx(js)
        # W1 within half a fine bin per unit mass, plus how far outside values lie.
        exact_w1 = stats.wasserstein_distance(reference[profile.name], values)
        fine = np.concatenate([[profile.min], profile.fine_edges, [profile.max]])
        ref_mass = masses @ np.diff(fine) / 2
        codes = np.searchsorted(profile.fine_edges, values, "right")
        win_mass = np.mean(np.diff(fine)[codes] / 2)
        beyond = np.mean(np.maximum(profile.min - values, 0) + np.maximum(values - profile.max, 0))
        bound = ref_mass + win_mass + beyond
        assert abs(stat.wasserstein * profile.std - exact_w1) <= bound + 1e-12
    assert 0.0 < color.unseen_rate < 0.05
    assert color.psi_bins == 4
    assert color.count + round(color.missing_rate * 800) == 800


def test_encode_matches_values_as_the_profile_wrote_them() -> None:
    labels = profile_series(pl.Series("label", [0, 1, 1, 2]).cast(pl.String))
    flags = profile_series(pl.Series("flag", [True, False, True]))
    window = DriftWindow([labels, flags])
    codes = window.layout.encode("label", [1, 2.0, "0", 7, None, float("nan"), np.int64(2)])
    categories = window.layout.categories("label")
    assert [categories[int(c)] if c < len(categories) else "unseen" for c in codes[:4]] == [
        "1", "2", "0", "unseen"
    ]  # fmt: skip
    assert np.isnan(codes[4:6]).all()
    assert categories[int(codes[6])] == "2"
    flag_codes = window.layout.encode("flag", [True, np.bool_(False)])
    assert [window.layout.categories("flag")[int(c)] for c in flag_codes] == ["true", "false"]


def test_empty_reference_and_empty_window_give_nan_not_errors(profiles: list) -> None:
    nothing = profile_series(pl.Series("nothing", [None, None], dtype=pl.Float64))
    window = DriftWindow([nothing, *profiles])
    stat: FeatureStatistics
    for stat in window.statistics():
        assert stat.count == 0
        assert np.isnan([stat.psi, stat.js, stat.hellinger]).all()
    window.update(np.array([[1.0, 1.0, 1.0, 1.0, 0.0]]), now=0.0)
    empty = window.statistics()[0]
    assert isinstance(empty, NumericStatistics)
    assert empty.count == 1
    assert np.isnan(empty.ks)


def test_update_rejects_rows_of_the_wrong_shape(profiles: list) -> None:
    window = DriftWindow(profiles)
    with pytest.raises(ValueError, match=r"rows must be \[n, 4\]"):
        window.update(np.zeros((3, 5)))
    assert isinstance(window.counts(), WindowCounts)
