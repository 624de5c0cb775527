"""Sliding windows of one model version's sampled rows, kept as bin counts.

Two views of the same stream. A count-based ring holds the last `capacity` rows: each new
value adds to its bin and the value it evicts subtracts from its own, O(1) per value, and the
rows themselves stay available for export. Time panes count every row by fixed wall-clock
intervals and only ever add, so panes from several workers or replicas merge by addition,
exactly, into the counts one window would have taken over the same rows.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Sequence

import numpy as np
import numpy.typing as npt

from monitor import kernels
from monitor.layout import FeatureStatistics, WindowCounts, WindowLayout
from registry.manifest import FeatureProfile

Floats = npt.NDArray[np.float64]


class DriftWindow:
    """The last `capacity` sampled rows of one model version, against its reference profile.

    Rows are float64 `[n, F]` in the order of the profiles; a categorical feature's column
    holds its category codes (`layout.encode`), NaN is a missing value. `update` may run in
    a worker thread (the kernel releases the GIL) while another thread reads statistics.
    """

    def __init__(
        self,
        profiles: Sequence[FeatureProfile],
        *,
        capacity: int = 2000,
        pane_seconds: float = 10.0,
        max_panes: int = 60,
    ) -> None:
        """Preallocate every buffer for `profiles` (a `ReferenceProfile`'s features or outputs).

        Args:
            profiles: The reference profile of each feature, in column order.
            capacity: Rows in the sliding window.
            pane_seconds: Width of a time pane. Panes start at multiples of it since the
                epoch, so panes of different processes line up.
            max_panes: Panes kept; older ones are dropped as new ones open.
        """
        if capacity < 1 or max_panes < 1 or pane_seconds <= 0:
            raise ValueError("capacity, max_panes and pane_seconds must be positive")
        self.layout = WindowLayout(profiles)
        self.capacity = capacity
        self.pane_seconds = pane_seconds
        features, slots = len(self.layout.names), self.layout.slots
        self._raw = np.zeros((capacity, features))
        self._codes = np.zeros((capacity, features), dtype=np.int32)
        self._counts = self.layout.empty()
        self._pane_counts = np.zeros((max_panes, features, slots), dtype=np.int64)
        self._pane_sums = np.zeros((max_panes, features, 2))
        self._pane_numbers = np.full(max_panes, -1, dtype=np.int64)  # start // width; -1: unused
        self._pane = 0  # slot of the newest pane
        self._head = 0  # ring slot the next row goes to
        self._filled = 0
        # Readers must not see counts half-way through a batch (n and sums out of step).
        self._lock = threading.Lock()

    @property
    def count(self) -> int:
        """Rows in the window now (at most `capacity`)."""
        return self._filled

    def update(self, rows: Floats, now: float | None = None) -> None:
        """Add `rows` [n, F] to the window and to the time pane of `now`.

        Args:
            rows: One sampled row per line, features in layout order.
            now: Seconds since the epoch, `time.time()` if omitted. Wall-clock, not
                monotonic, time so that panes of different processes line up. A time
                before the newest pane (a clock step back) counts in the newest pane.
        """
        rows = np.ascontiguousarray(rows, dtype=np.float64)
        if rows.ndim != 2 or rows.shape[1] != len(self.layout.names):
            raise ValueError(f"rows must be [n, {len(self.layout.names)}], got {rows.shape}")
        number = int((time.time() if now is None else now) // self.pane_seconds)
        layout = self.layout
        with self._lock:
            pane = self._open_pane(number)
            self._head, self._filled = kernels.window_update(
                rows,
                kinds=layout.kinds,
                sizes=layout.sizes,
                edges=layout.edges,
                centers=layout.centers,
                inv_scales=layout.inv_scales,
                raw=self._raw,
                codes=self._codes,
                counts=self._counts.counts,
                sums=self._counts.sums,
                pane_counts=self._pane_counts[pane],
                pane_sums=self._pane_sums[pane],
                head=self._head,
                filled=self._filled,
            )

    def counts(self) -> WindowCounts:
        """A copy of the window's counts."""
        with self._lock:
            return WindowCounts(self._counts.counts.copy(), self._counts.sums.copy())

    def statistics(self) -> tuple[FeatureStatistics, ...]:
        """Every feature's drift statistics over the window, in O(bins) per feature."""
        return self.layout.statistics(self.counts())

    def pane_counts(self) -> dict[float, WindowCounts]:
        """Copies of the counts of every kept pane, by pane start (seconds since the epoch)."""
        with self._lock:
            slots = np.roll(np.arange(self._pane_numbers.size), -(self._pane + 1))
            return {
                float(self._pane_numbers[slot] * self.pane_seconds): WindowCounts(
                    self._pane_counts[slot].copy(), self._pane_sums[slot].copy()
                )
                for slot in slots.tolist()
                if self._pane_numbers[slot] >= 0
            }

    def rows(self) -> Floats:
        """A copy of the rows in the window, oldest first (categorical columns as codes)."""
        with self._lock:
            if self._filled < self.capacity:
                return self._raw[: self._filled].copy()
            return np.concatenate([self._raw[self._head :], self._raw[: self._head]])

    def _open_pane(self, number: int) -> int:
        """Slot of pane `number`, opening (and zeroing) a new slot when time moved on."""
        if self._pane_numbers[self._pane] < 0:
            self._pane_numbers[self._pane] = number
        elif number > self._pane_numbers[self._pane]:
            self._pane = (self._pane + 1) % self._pane_numbers.size
            self._pane_numbers[self._pane] = number
            self._pane_counts[self._pane] = 0
            self._pane_sums[self._pane] = 0.0
        return self._pane


def merge(parts: Iterable[WindowCounts]) -> WindowCounts:
    """The counts of the union of the samples behind `parts`: their element-wise sum.

    Counts over the same fixed bins add exactly, whichever process or pane took them.

    Raises:
        ValueError: If `parts` is empty (the layout's shape is unknown).
    """
    iterator = iter(parts)
    first = next(iterator, None)
    if first is None:
        raise ValueError("nothing to merge")
    counts, sums = first.counts.copy(), first.sums.copy()
    for part in iterator:
        counts += part.counts
        sums += part.sums
    return WindowCounts(counts, sums)
