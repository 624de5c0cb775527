"""Changes applied to live rows, and the rows a sliding window of them is fed.

A single-feature shift changes one column; a correlation break shuffles every column of a
window apart (each marginal unchanged); a covariate shift changes which rows arrive (the
top third of one feature), not their values.
"""

from __future__ import annotations

from collections import deque
from typing import NamedTuple

import numpy as np
import numpy.typing as npt

Floats = npt.NDArray[np.float64]
Ints = npt.NDArray[np.int64]
TRIES = 32  # draws for a row not in the window before a repeat is accepted


class Shift(NamedTuple):
    """A change of live rows: `kind` says which, `amount` how much."""

    name: str
    kind: str  # clean, offset, scale, missing, inf, correlation or covariate
    amount: float = 0.0

    @property
    def single(self) -> bool:
        """Whether it changes one feature only (so blame has a right answer)."""
        return self.kind in ("offset", "scale", "missing", "inf")


CLEAN = Shift("clean", "clean")
SHIFTS = (
    Shift("offset +0.1 sd", "offset", 0.1),
    Shift("offset +0.25 sd", "offset", 0.25),
    Shift("offset +0.5 sd", "offset", 0.5),
    Shift("scale x1.25", "scale", 1.25),
    Shift("scale x1.5", "scale", 1.5),
    Shift("5% missing", "missing", 0.05),
    Shift("20% missing", "missing", 0.2),
    Shift("2% +inf", "inf", 0.02),
    Shift("5% +inf", "inf", 0.05),
    Shift("correlation break", "correlation"),
    Shift("covariate: top third", "covariate"),
)


def apply(
    shift: Shift,
    rows: Floats,
    feature: int,
    *,
    mean: float,
    std: float,
    rng: np.random.Generator,
) -> Floats:
    """A copy of `rows` with `shift` applied to `feature` (reference `mean` and `std`).

    Offsets are in reference std; scales stretch about the reference mean; missing and
    +inf values replace each value of the feature with probability `amount`.
    """
    rows = rows.copy()
    column = rows[:, feature]
    if shift.kind == "offset":
        column += shift.amount * std
    elif shift.kind == "scale":
        column[:] = mean + (column - mean) * shift.amount
    elif shift.kind in ("missing", "inf"):
        hit = rng.random(len(column)) < shift.amount
        column[hit] = np.nan if shift.kind == "missing" else np.inf
    elif shift.kind == "correlation":
        for index in range(rows.shape[1]):
            rows[:, index] = rng.permutation(rows[:, index])
    return rows


def top_third(values: Floats, rng: np.random.Generator) -> Ints:
    """Indices of the third of `values` that is largest, ties broken at random."""
    order = np.lexsort((rng.random(len(values)), values))
    return order[len(values) - len(values) // 3 :].astype(np.int64)


class RowSource:
    """Row ids for a sliding window of `n`: never one already inside while others remain.

    Each window is then a set of distinct rows, and since nothing favours one id over
    another, a uniformly random subset of the pool: a valid no-drift sample, however long
    the stream runs over a finite live half.
    """

    def __init__(self, size: int, n: int, rng: np.random.Generator) -> None:
        """Draw from ids below `size` for a window of `n` rows."""
        self._inside = np.zeros(size, dtype=np.int64)
        self._ring: deque[int] = deque()
        self._n = n
        self._rng = rng

    def draw(self, pool: Ints, count: int) -> Ints:
        """The next `count` ids, from `pool`; they enter the window, the oldest leave it."""
        candidates = pool[self._rng.integers(pool.size, size=count * TRIES)].tolist()
        inside = self._inside
        picked = []
        for row in range(count):
            tries = candidates[row * TRIES : (row + 1) * TRIES]
            pick = next((c for c in tries if not inside[c]), tries[-1])
            inside[pick] += 1
            self._ring.append(pick)
            if len(self._ring) > self._n:
                inside[self._ring.popleft()] -= 1
            picked.append(pick)
        return np.array(picked, dtype=np.int64)
