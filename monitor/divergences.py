"""numba kernels for drift statistics: two count vectors over the same bins in, a number out.

Each takes the reference's and the window's float64 counts over the same bins and runs in
O(bins); none smooths unless it says so. `numeric_statistics` and `categorical_statistics`
compute all of them for many features in one call, so that evaluating a model version does
not pay one Python-to-numba dispatch per feature and statistic.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt
from numba import njit

Floats = npt.NDArray[np.float64]
Ints = npt.NDArray[np.int64]


@njit(cache=True, nogil=True)
def ks_statistic(reference: Floats, window: Floats) -> float:
    """Kolmogorov-Smirnov distance of binned samples: D_b = max_i |P_i - Q_i|.

    P_i and Q_i are the reference and window masses of bins 0..i (CDFs at the bin edges).
    Bound against the exact two-sample statistic D = sup_x |F_r(x) - F_w(x)|: the edges are
    points where D is taken, so D_b <= D. Inside bin i, of masses p_i and q_i, both CDFs only
    rise, so F_w(x) - F_r(x) <= Q_i - P_(i-1) = (Q_i - P_i) + p_i and also
    <= (Q_(i-1) - P_(i-1)) + q_i, and symmetrically from below. Hence

        D_b <= D <= D_b + max_i min(p_i, q_i) <= D_b + max_i p_i,

    about 0.01 with 100 equal-mass reference bins. Returns NaN if either side is empty.
    """
    total_r, total_w = reference.sum(), window.sum()
    if total_r <= 0.0 or total_w <= 0.0:
        return math.nan
    cum_r = cum_w = distance = 0.0
    for i in range(reference.shape[0]):
        cum_r += reference[i]
        cum_w += window[i]
        distance = max(distance, abs(cum_r / total_r - cum_w / total_w))
    return distance


@njit(cache=True, nogil=True)
def psi(reference: Floats, window: Floats, pseudo_count: float) -> float:
    """Population stability index, smoothed: PSI = sum_i (q_i - p_i) ln(q_i / p_i).

    p_i = (r_i + a) / (R + a B) and q_i = (w_i + a) / (W + a B), a = `pseudo_count`, over the
    B bins where r_i + w_i > 0. The pseudo-count (a = 0.5 is the Jeffreys prior) keeps a bin
    empty on one side finite. Bins empty on both sides carry no evidence and are skipped: with
    a large reference and a small window, smoothing them would add about (a / W) ln(R / W)
    each. Returns NaN if either side is empty.
    """
    total_r, total_w = reference.sum(), window.sum()
    if total_r <= 0.0 or total_w <= 0.0:
        return math.nan
    bins = 0
    for i in range(reference.shape[0]):
        if reference[i] + window[i] > 0.0:
            bins += 1
    norm_r, norm_w = total_r + pseudo_count * bins, total_w + pseudo_count * bins
    index = 0.0
    for i in range(reference.shape[0]):
        if reference[i] + window[i] > 0.0:
            p = (reference[i] + pseudo_count) / norm_r
            q = (window[i] + pseudo_count) / norm_w
            index += (q - p) * math.log(q / p)
    return index


@njit(cache=True, nogil=True)
def js_divergence(reference: Floats, window: Floats) -> float:
    """Jensen-Shannon divergence, base 2: JS = (KL(p || m) + KL(q || m)) / 2, m = (p + q) / 2.

    KL(p || m) = sum_i p_i log2(p_i / m_i) with 0 log 0 = 0, so empty bins need no smoothing;
    JS lies in [0, 1]. Returns NaN if either side is empty.
    """
    total_r, total_w = reference.sum(), window.sum()
    if total_r <= 0.0 or total_w <= 0.0:
        return math.nan
    divergence = 0.0
    for i in range(reference.shape[0]):
        p, q = reference[i] / total_r, window[i] / total_w
        m = 0.5 * (p + q)
        if p > 0.0:
            divergence += 0.5 * p * math.log2(p / m)
        if q > 0.0:
            divergence += 0.5 * q * math.log2(q / m)
    return max(divergence, 0.0)


@njit(cache=True, nogil=True)
def hellinger(reference: Floats, window: Floats) -> float:
    """Hellinger distance: H = sqrt(1 - sum_i sqrt(p_i q_i)), in [0, 1]; NaN if a side is empty."""
    total_r, total_w = reference.sum(), window.sum()
    if total_r <= 0.0 or total_w <= 0.0:
        return math.nan
    affinity = 0.0
    for i in range(reference.shape[0]):
        affinity += math.sqrt(reference[i] / total_r * window[i] / total_w)
    return math.sqrt(max(1.0 - affinity, 0.0))


@njit(cache=True, nogil=True)
def wasserstein(reference: Floats, window: Floats, points: Floats) -> float:
    """Wasserstein-1 distance with each bin's mass at `points[i]` (sorted).

    W_b = sum_(i < B-1) |P_i - Q_i| (x_(i+1) - x_i), the exact W1 of the two binned
    distributions (P, Q cumulative masses). Moving each value to its bin's point moves it by
    at most h_i, so by the triangle inequality |W_b - W| <= sum_i (p_i + q_i) h_i: half a bin
    width per unit mass with midpoints, plus the distance beyond the reference range for
    values outside it. Returns NaN if either side is empty.
    """
    total_r, total_w = reference.sum(), window.sum()
    if total_r <= 0.0 or total_w <= 0.0:
        return math.nan
    cum_r = cum_w = distance = 0.0
    for i in range(reference.shape[0] - 1):
        cum_r += reference[i]
        cum_w += window[i]
        distance += abs(cum_r / total_r - cum_w / total_w) * (points[i + 1] - points[i])
    return distance


@njit(cache=True, nogil=True)
def chi_square(reference: Floats, window: Floats) -> tuple[float, int]:
    """Pearson's chi-square test of homogeneity of two count vectors.

    X^2 = sum_i sum_s (n_si - E_si)^2 / E_si with E_si = N_s (r_i + w_i) / (R + W) for the two
    samples s, over the B bins where r_i + w_i > 0; B - 1 degrees of freedom. The same as
    `scipy.stats.chi2_contingency(table, correction=False)`. A category the reference never
    saw counts as evidence here instead of making the statistic infinite.

    Returns:
        `(X^2, degrees of freedom)`; `(nan, 0)` if either side is empty.
    """
    total_r, total_w = reference.sum(), window.sum()
    if total_r <= 0.0 or total_w <= 0.0:
        return math.nan, 0
    total = total_r + total_w
    statistic, bins = 0.0, 0
    for i in range(reference.shape[0]):
        both = reference[i] + window[i]
        if both > 0.0:
            bins += 1
            expected_r, expected_w = total_r * both / total, total_w * both / total
            statistic += (reference[i] - expected_r) ** 2 / expected_r
            statistic += (window[i] - expected_w) ** 2 / expected_w
    return statistic, bins - 1


@njit(cache=True, nogil=True)
def pool_sparse(reference: Floats, window: Floats, min_expected: float) -> tuple[Floats, Floats]:
    """Merge the bins a chi-square test cannot judge, so that every bin expects enough.

    A bin is sparse when its expected window count under homogeneity,
    E_i = W (r_i + w_i) / (R + W), is under `min_expected` (Cochran's rule asks for 5). The
    sparse bins become one; if that one is still sparse it joins the smallest other bin.
    Without this, one value of a rare category (E = 0.05) adds ~20 to Pearson's X^2 and a
    drift-free window looks significant. Bins empty on both sides are dropped.
    """
    total_r, total_w = reference.sum(), window.sum()
    pooled_r = np.zeros(reference.shape[0] + 1)
    pooled_w = np.zeros(reference.shape[0] + 1)
    kept, sparse_r, sparse_w = 0, 0.0, 0.0
    for i in range(reference.shape[0]):
        both = reference[i] + window[i]
        if both <= 0.0:
            continue
        if total_w * both < min_expected * (total_r + total_w):
            sparse_r += reference[i]
            sparse_w += window[i]
        else:
            pooled_r[kept], pooled_w[kept] = reference[i], window[i]
            kept += 1
    both = sparse_r + sparse_w
    if both > 0.0:
        if kept == 0 or total_w * both >= min_expected * (total_r + total_w):
            pooled_r[kept], pooled_w[kept] = sparse_r, sparse_w
            kept += 1
        else:
            smallest = np.argmin(pooled_r[:kept] + pooled_w[:kept])
            pooled_r[smallest] += sparse_r
            pooled_w[smallest] += sparse_w
    return pooled_r[:kept], pooled_w[:kept]


@njit(cache=True, nogil=True)
def moments(sum_z: float, sum_z2: float, count: float) -> tuple[float, float]:
    """Mean and std of standardized values from their running sums: mean = S1 / n,
    std = sqrt(S2 / n - mean^2). With z in reference std units the mean is the mean shift and
    the std the ratio of window to reference spread. `(nan, nan)` for an empty window.
    """
    if count <= 0.0:
        return math.nan, math.nan
    mean = sum_z / count
    return mean, math.sqrt(max(sum_z2 / count - mean * mean, 0.0))


# Columns of the `numeric_statistics` and `categorical_statistics` results.
COUNT, MISSING, OUTSIDE, KS, PSI, JS, HELLINGER, WASSERSTEIN = range(8)
MEAN_SHIFT, STD_RATIO, CHI_SQUARE, CHI_SQUARE_DOF, TAIL = range(8, 13)
COLUMNS = 13


@njit(cache=True, nogil=True)
def numeric_statistics(
    counts: Ints,
    features: Ints,
    *,
    sizes: Ints,
    ks_map: Ints,
    ks_reference: Floats,
    ks_points: Floats,
    ks_tail: Floats,
    coarse_map: Ints,
    coarse_reference: Floats,
    sums: Floats,
    inv_scales: Floats,
    pseudo_count: float,
    min_expected: float,
) -> Floats:
    """Every statistic of numeric features `features` from window `counts` [F, slots].

    Window bins are folded into KS bins (fine bins plus one below and one above the
    reference range) by `ks_map[j]` and into coarse bins by `coarse_map[j]`; row j of the
    reference arrays is zero-padded past its own bin count. KS and Wasserstein use the fine
    bins; PSI, JS, Hellinger and chi-square (on `pool_sparse` bins) the coarse ones, where a
    small window has enough per bin. W1 and the moments are in reference std (`inv_scales`).
    `ks_tail[j, i]` is 1 where KS bin i lies in a tail of the reference; TAIL counts them.

    Returns:
        [len(features), COLUMNS], columns COUNT ... TAIL of this module.
    """
    result = np.empty((features.shape[0], COLUMNS))
    ks_window = np.empty(ks_reference.shape[1])
    coarse_window = np.empty(coarse_reference.shape[1])
    for j in range(features.shape[0]):
        f = features[j]
        ks_window[:] = 0.0
        coarse_window[:] = 0.0
        for b in range(sizes[f] + 1):  # every bin but the missing slot
            ks_window[ks_map[j, b]] += counts[f, b]
            coarse_window[coarse_map[j, b]] += counts[f, b]
        bins = ks_map[j, sizes[f]] + 1  # the last window bin folds into the "above" KS bin
        window, reference = ks_window[:bins], ks_reference[j, :bins]
        count = window.sum()
        result[j, COUNT] = count
        result[j, MISSING] = counts[f, sizes[f] + 1]
        result[j, OUTSIDE] = window[0] + window[bins - 1]
        result[j, KS] = ks_statistic(reference, window)
        result[j, TAIL] = (window * ks_tail[j, :bins]).sum()
        distance = wasserstein(reference, window, ks_points[j, :bins])
        result[j, WASSERSTEIN] = distance * inv_scales[f]
        coarse = coarse_reference[j]
        result[j, PSI] = psi(coarse, coarse_window, pseudo_count)
        result[j, JS] = js_divergence(coarse, coarse_window)
        result[j, HELLINGER] = hellinger(coarse, coarse_window)
        result[j, MEAN_SHIFT], result[j, STD_RATIO] = moments(sums[f, 0], sums[f, 1], count)
        pooled = pool_sparse(coarse, coarse_window, min_expected)
        result[j, CHI_SQUARE], result[j, CHI_SQUARE_DOF] = chi_square(*pooled)
    return result


@njit(cache=True, nogil=True)
def categorical_statistics(
    counts: Ints,
    features: Ints,
    *,
    sizes: Ints,
    reference: Floats,
    pseudo_count: float,
    min_expected: float,
) -> Floats:
    """Chi-square, PSI, JS and Hellinger of categorical features `features` from `counts`.

    Row j of `reference` holds the reference counts of the K categories and a zero for the
    unseen bucket, zero-padded past K + 1; bins empty on both sides change no statistic.
    The chi-square test compares the shares of the K known categories only, on the bins
    `pool_sparse` leaves with `min_expected`: pooled, the unseen bucket would hide in the
    smallest category. Unseen values are judged by their own rate (`monitor.detector`).

    Returns:
        [len(features), COLUMNS], columns COUNT, MISSING, OUTSIDE (the unseen count),
        PSI, JS, HELLINGER, CHI_SQUARE, CHI_SQUARE_DOF; the others are NaN.
    """
    result = np.full((features.shape[0], COLUMNS), np.nan)
    window = np.zeros(reference.shape[1])
    for j in range(features.shape[0]):
        f = features[j]
        window[:] = 0.0
        for b in range(sizes[f] + 1):  # categories and the unseen bucket
            window[b] = counts[f, b]
        result[j, COUNT] = window.sum()
        result[j, MISSING] = counts[f, sizes[f] + 1]
        result[j, OUTSIDE] = window[sizes[f]]
        known = sizes[f]
        pooled = pool_sparse(reference[j, :known], window[:known], min_expected)
        result[j, CHI_SQUARE], result[j, CHI_SQUARE_DOF] = chi_square(*pooled)
        result[j, PSI] = psi(reference[j], window, pseudo_count)
        result[j, JS] = js_divergence(reference[j], window)
        result[j, HELLINGER] = hellinger(reference[j], window)
    return result
