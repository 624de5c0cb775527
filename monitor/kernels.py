"""numba kernels of the drift monitor: pure functions over arrays, no state of their own.

Bin codes. A numeric feature with E interior cut points `edges` has bins 0..E, bin i being
`[edges[i-1], edges[i])`, exactly as `np.searchsorted(edges, x, side="right")` numbers them,
and code E + 1 for a missing value (NaN). A categorical feature with K categories has codes
0..K-1, code K for a value the reference never showed and K + 1 for missing. Either way a
feature of size S (E or K) owns S + 2 count slots and its missing slot is S + 1.

The statistics over these counts are in `monitor.divergences`; the classes in
`monitor.window` own every array.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt
from numba import njit

from monitor import divergences

Floats = npt.NDArray[np.float64]
Ints = npt.NDArray[np.int64]

NUMERIC = 0
CATEGORICAL = 1
# Standardized values are clipped to +-Z_LIMIT reference std: an outlier (or inf) then cannot
# overflow the running sum of squares, and subtracting it again on eviction stays finite.
Z_LIMIT = 1e6


@njit(cache=True, nogil=True)
def _search(edges: Floats, count: int, x: float) -> int:
    """`np.searchsorted(edges[:count], x, side="right")`: the number of cut points <= x."""
    low, high = 0, count
    while low < high:
        middle = (low + high) >> 1
        if edges[middle] <= x:
            low = middle + 1
        else:
            high = middle
    return low


@njit(cache=True, nogil=True)
def _code(x: float, kind: int, size: int, edges: Floats) -> int:
    """Code of value `x` of a feature of `kind` and `size`; see the module docstring.

    A categorical value arrives as its category index (a float); anything but an integer in
    [0, size) is unseen.
    """
    if math.isnan(x):
        return size + 1
    if kind == NUMERIC:
        return _search(edges, size, x)
    if 0.0 <= x < size and x == math.floor(x):
        return int(x)
    return size


@njit(cache=True, nogil=True)
def assign_bins(values: Floats, edges: Floats) -> Ints:
    """Bin code of each value: `searchsorted(edges, x, side="right")`, len(edges) + 1 if NaN."""
    codes = np.empty(values.shape[0], dtype=np.int64)
    for i in range(values.shape[0]):
        codes[i] = _code(values[i], NUMERIC, edges.shape[0], edges)
    return codes


@njit(cache=True, nogil=True)
def _standardize(x: float, center: float, inv_scale: float) -> float:
    """z = (x - mean) / std of the reference, clipped to +-Z_LIMIT."""
    return min(max((x - center) * inv_scale, -Z_LIMIT), Z_LIMIT)


@njit(cache=True, nogil=True)
def window_update(
    rows: Floats,
    *,
    kinds: Ints,
    sizes: Ints,
    edges: Floats,
    centers: Floats,
    inv_scales: Floats,
    raw: Floats,
    codes: npt.NDArray[np.int32],
    counts: Ints,
    sums: Floats,
    pane_counts: Ints,
    pane_sums: Floats,
    head: int,
    filled: int,
) -> tuple[int, int]:
    """Push `rows` [n, F] into a ring of the last `capacity = raw.shape[0]` rows, O(1) a value.

    For each value: find its code c, and if the ring is full take the evicted code c' of the
    same feature: `counts[f, c'] -= 1; counts[f, c] += 1` (the sliding-window identity
    count(last N) = count(last N before) - evicted + new). Numeric features also keep
    `sums[f] = (sum z, sum z^2)` of standardized values z = (x - mean) / std, updated the same
    way. `pane_counts` and `pane_sums` (the current time pane) only ever add.

    Subtracting floats drifts by rounding, so each time the ring wraps the sums are recomputed
    from the stored rows: one extra pass per `capacity` rows, still O(1) amortized.

    Returns:
        The new `(head, filled)`: next slot to write and the number of rows held.
    """
    capacity = raw.shape[0]
    for r in range(rows.shape[0]):
        full = filled == capacity
        for f in range(rows.shape[1]):
            x = rows[r, f]
            size = sizes[f]
            numeric = kinds[f] == NUMERIC
            code = _code(x, kinds[f], size, edges[f])
            if full:
                old = codes[head, f]
                counts[f, old] -= 1
                if numeric and old != size + 1:
                    z = _standardize(raw[head, f], centers[f], inv_scales[f])
                    sums[f, 0] -= z
                    sums[f, 1] -= z * z
            counts[f, code] += 1
            pane_counts[f, code] += 1
            raw[head, f] = x
            codes[head, f] = code
            if numeric and code != size + 1:
                z = _standardize(x, centers[f], inv_scales[f])
                sums[f, 0] += z
                sums[f, 1] += z * z
                pane_sums[f, 0] += z
                pane_sums[f, 1] += z * z
        head += 1
        if not full:
            filled += 1
        if head == capacity:  # a lap: recompute the sums exactly, see the docstring
            head = 0
            sums[:, :] = 0.0
            for slot in range(capacity):
                for f in range(rows.shape[1]):
                    if kinds[f] == NUMERIC and codes[slot, f] != sizes[f] + 1:
                        z = _standardize(raw[slot, f], centers[f], inv_scales[f])
                        sums[f, 0] += z
                        sums[f, 1] += z * z
    return head, filled


def warm_up() -> None:
    """Compile (or load from the on-disk cache) every kernel, for the dtypes the window uses.

    Called at start-up so that the first request does not pay numba's compilation.
    """
    edges = np.array([0.0, 1.0])
    assign_bins(np.array([0.5, np.nan]), edges)
    kinds, sizes = np.array([NUMERIC, CATEGORICAL]), np.array([2, 2])
    counts, sums = np.zeros((2, 4), dtype=np.int64), np.zeros((2, 2))
    window_update(
        np.array([[0.5, 1.0], [np.nan, 5.0], [2.0, 0.0]]),
        kinds=kinds,
        sizes=sizes,
        edges=np.array([edges, edges]),
        centers=np.zeros(2),
        inv_scales=np.ones(2),
        raw=np.zeros((2, 2)),
        codes=np.zeros((2, 2), dtype=np.int32),
        counts=counts,
        sums=sums,
        pane_counts=counts.copy(),
        pane_sums=sums.copy(),
        head=0,
        filled=0,
    )
    one, maps = np.array([0]), np.array([[0, 1, 2]])
    reference = np.array([[1.0, 2.0, 3.0]])
    divergences.numeric_statistics(
        counts,
        one,
        sizes=sizes,
        ks_map=maps,
        ks_reference=reference,
        ks_points=reference,
        ks_tail=reference,
        coarse_map=maps,
        coarse_reference=reference,
        sums=sums,
        inv_scales=np.ones(2),
        pseudo_count=0.5,
        min_expected=5.0,
    )
    divergences.categorical_statistics(
        counts, one + 1, sizes=sizes, reference=reference, pseudo_count=0.5, min_expected=5.0
    )
    row = reference[0]
    for kernel in (
        divergences.ks_statistic,
        divergences.js_divergence,
        divergences.hellinger,
        divergences.chi_square,
    ):
        kernel(row, row)
    divergences.psi(row, row, 0.5)
    divergences.wasserstein(row, row, row)
    divergences.pool_sparse(row, row, 5.0)
    divergences.moments(1.0, 2.0, 3.0)
