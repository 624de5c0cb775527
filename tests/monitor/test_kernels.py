"""The numba kernels against numpy and scipy on the same data."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from scipy import stats

from monitor import divergences, kernels
from registry.manifest import NumericProfile
from registry.profile import profile_series


def numeric_profile(values: np.ndarray) -> NumericProfile:
    profile = profile_series(pl.Series("x", values))
    assert isinstance(profile, NumericProfile)
    return profile


def fresh_counts(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Bin counts the slow way, missing last."""
    codes = np.where(np.isnan(values), edges.size + 1, np.searchsorted(edges, values, "right"))
    return np.bincount(codes, minlength=edges.size + 2)


WARM_UP_THEN_SERVE = """
import numpy as np, polars as pl
from monitor import DriftWindow, kernels, divergences, warm_up
from registry.profile import profile_series
warm_up()
used = [kernels.window_update, divergences.numeric_statistics, divergences.categorical_statistics]
before = [list(kernel.signatures) for kernel in used]
profiles = [profile_series(pl.Series("x", [1.0, 2.0, 3.0])), profile_series(pl.Series("c", ["a"]))]
window = DriftWindow(profiles, capacity=4)
window.update(np.array([[1.5, 0.0], [np.nan, 1.0]], dtype=np.float32))
window.statistics()
assert [list(kernel.signatures) for kernel in used] == before, "compiled on first use"
"""


def test_warm_up_compiles_what_the_window_uses() -> None:
    # A fresh interpreter: in this one, earlier tests may have compiled them already.
    root = Path(__file__).parents[2]
    subprocess.run([sys.executable, "-c", WARM_UP_THEN_SERVE], check=True, timeout=60, cwd=root)


def test_assign_bins_matches_searchsorted_right() -> None:
    rng = np.random.default_rng(1)
    edges = np.unique(rng.integers(0, 20, 15).astype(float))  # values will hit edges exactly
    values = rng.integers(-2, 23, 1000).astype(float)
    values[::7] = np.nan
    codes = kernels.assign_bins(values, edges)
    expected = np.where(np.isnan(values), edges.size + 1, np.searchsorted(edges, values, "right"))
    np.testing.assert_array_equal(codes, expected)


def test_window_update_counts_equal_a_fresh_count_of_the_last_n() -> None:
    rng = np.random.default_rng(2)
    capacity, features = 37, 3
    edges = np.sort(rng.normal(size=(features, 9)), axis=1)
    kinds = np.array([kernels.NUMERIC, kernels.NUMERIC, kernels.CATEGORICAL])
    sizes = np.array([9, 9, 4])  # the categorical has 4 categories
    centers, inv_scales = np.array([0.5, -1.0, 0.0]), np.array([2.0, 0.5, 1.0])
    raw, codes = np.zeros((capacity, features)), np.zeros((capacity, features), dtype=np.int32)
    counts, sums = np.zeros((features, 11), dtype=np.int64), np.zeros((features, 2))
    pane_counts, pane_sums = counts.copy(), sums.copy()
    head = filled = 0
    seen = np.empty((0, features))
    for size in rng.integers(1, 30, 25):
        batch = np.column_stack([rng.normal(size=(size, 2)), rng.integers(-1, 6, size)])
        batch[rng.random(batch.shape) < 0.1] = np.nan
        head, filled = kernels.window_update(
            batch, kinds=kinds, sizes=sizes, edges=edges, centers=centers,
            inv_scales=inv_scales, raw=raw, codes=codes, counts=counts, sums=sums,
            pane_counts=pane_counts, pane_sums=pane_sums, head=head, filled=filled,
        )  # fmt: skip
        seen = np.concatenate([seen, batch])
        last = seen[-capacity:]
        assert filled == len(last)
        for f in range(2):
            np.testing.assert_array_equal(counts[f], fresh_counts(last[:, f], edges[f]))
            z = (last[:, f][~np.isnan(last[:, f])] - centers[f]) * inv_scales[f]
            np.testing.assert_allclose(sums[f], [z.sum(), (z * z).sum()], atol=1e-9)
        category = last[:, 2]
        # Codes 0..3 are categories; -1, 4 and 5 are unseen (4); NaN is missing (5).
        known = (category >= 0) & (category < 4)
        expected = np.where(np.isnan(category), 5, np.where(known, category, 4))
        np.testing.assert_array_equal(counts[2, :6], np.bincount(expected.astype(int), minlength=6))
    # The pane only ever adds: it has seen every row.
    np.testing.assert_array_equal(pane_counts[0], fresh_counts(seen[:, 0], edges[0]))


@pytest.mark.parametrize(
    "draw",
    [
        lambda rng, n, shift: rng.normal(shift, 1.0, n),
        lambda rng, n, shift: rng.lognormal(shift, 1.0, n),
        lambda rng, n, shift: rng.poisson(3.0 + shift, n).astype(float),  # ties everywhere
    ],
    ids=["normal", "lognormal", "poisson"],
)
@pytest.mark.parametrize("shift", [0.0, 0.3, 1.0])
def test_binned_ks_is_within_its_bound_of_the_exact_statistic(
    draw: Callable[[np.random.Generator, int, float], np.ndarray], shift: float
) -> None:
    rng = np.random.default_rng(3)
    reference, window = draw(rng, 20_000, 0.0), draw(rng, 700, shift)
    profile = numeric_profile(reference)
    edges = np.array(profile.fine_edges)
    ref_counts = np.array(profile.fine_counts, dtype=float)
    win_counts = np.bincount(kernels.assign_bins(window, edges), minlength=edges.size + 1)
    binned = divergences.ks_statistic(ref_counts, win_counts.astype(float))
    exact = stats.ks_2samp(reference, window).statistic
    p, q = ref_counts / ref_counts.sum(), win_counts / win_counts.sum()
    assert binned <= exact + 1e-12
    assert exact <= binned + np.max(np.minimum(p, q)) + 1e-12
    assert exact <= binned + p.max() + 1e-12


def counts_pair(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Reference and window counts over 12 bins, with bins empty on either side or both."""
    rng = np.random.default_rng(seed)
    reference = rng.integers(0, 2000, 12).astype(float)
    window = rng.integers(0, 60, 12).astype(float)
    reference[[1, 4]] = 0.0
    window[[4, 7]] = 0.0
    return reference, window


@pytest.mark.parametrize("seed", range(5))
def test_psi_js_hellinger_equal_a_direct_numpy_computation(seed: int) -> None:
    reference, window = counts_pair(seed)
    used = (reference + window) > 0
    a = 0.5
    p = (reference[used] + a) / (reference.sum() + a * used.sum())
    q = (window[used] + a) / (window.sum() + a * used.sum())
    assert divergences.psi(reference, window, a) == pytest.approx(np.sum((q - p) * np.log(q / p)))
    p, q = reference / reference.sum(), window / window.sum()
    m = (p + q) / 2
    with np.errstate(divide="ignore", invalid="ignore"):
        js = 0.5 * np.nansum(p * np.log2(p / m)) + 0.5 * np.nansum(q * np.log2(q / m))
    assert divergences.js_divergence(reference, window) == pytest.approx(js)
    assert divergences.js_divergence(reference, window) == pytest.approx(
        stats.entropy(p, m, base=2) / 2 + stats.entropy(q, m, base=2) / 2
    )
    hellinger = np.sqrt(np.sum((np.sqrt(p) - np.sqrt(q)) ** 2) / 2)
    assert divergences.hellinger(reference, window) == pytest.approx(hellinger)


@pytest.mark.parametrize("seed", range(5))
def test_chi_square_equals_scipy_contingency(seed: int) -> None:
    reference, window = counts_pair(seed)
    used = (reference + window) > 0
    result = stats.chi2_contingency(np.vstack([reference[used], window[used]]), correction=False)
    statistic, dof = divergences.chi_square(reference, window)
    assert statistic == pytest.approx(result.statistic)
    assert dof == result.dof


def test_pool_sparse_leaves_only_bins_that_expect_enough() -> None:
    reference = np.array([5000.0, 3000.0, 1990.0, 8.0, 2.0, 0.0, 0.0])
    window = np.array([52.0, 28.0, 18.0, 1.0, 0.0, 1.0, 0.0])  # one value never seen before
    pooled_r, pooled_w = divergences.pool_sparse(reference, window, 5.0)
    assert pooled_r.sum() == reference.sum()
    assert pooled_w.sum() == window.sum()
    total = reference.sum() + window.sum()
    assert np.all(window.sum() * (pooled_r + pooled_w) / total >= 5.0)
    # Unpooled, the one unseen value alone looks like overwhelming evidence.
    raw, raw_dof = divergences.chi_square(reference, window)
    pooled, dof = divergences.chi_square(pooled_r, pooled_w)
    assert stats.chi2.sf(raw, raw_dof) < 1e-4 < 0.05 < stats.chi2.sf(pooled, dof)


@pytest.mark.parametrize("shift", [0.0, 0.5, 2.0])
def test_wasserstein_is_within_its_bound_of_scipy(shift: float) -> None:
    rng = np.random.default_rng(4)
    reference, window = rng.normal(0, 1, 20_000), rng.normal(shift, 1.3, 500)
    edges = np.quantile(reference, np.linspace(0, 1, 101))
    edges[0], edges[-1] = min(reference.min(), window.min()), max(reference.max(), window.max())
    ref_counts = np.histogram(reference, edges)[0].astype(float)
    win_counts = np.histogram(window, edges)[0].astype(float)
    points, widths = (edges[1:] + edges[:-1]) / 2, np.diff(edges)
    binned = divergences.wasserstein(ref_counts, win_counts, points)
    exact = stats.wasserstein_distance(reference, window)
    p, q = ref_counts / ref_counts.sum(), win_counts / win_counts.sum()
    assert abs(binned - exact) <= np.sum((p + q) * widths / 2) + 1e-12


def test_moments_and_empty_inputs() -> None:
    z = np.array([0.5, 1.5, -1.0, 2.0])
    mean, std = divergences.moments(z.sum(), (z * z).sum(), 4.0)
    assert (mean, std) == (pytest.approx(z.mean()), pytest.approx(z.std()))
    empty, some = np.zeros(3), np.ones(3)
    assert np.isnan(divergences.moments(0.0, 0.0, 0.0)[0])
    for kernel in (divergences.ks_statistic, divergences.js_divergence, divergences.hellinger):
        assert np.isnan(kernel(empty, some))
    assert np.isnan(divergences.psi(some, empty, 0.5))
    assert divergences.chi_square(some, empty)[1] == 0
