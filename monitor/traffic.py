"""Per-version outcomes in time panes: calls, server errors, latency, label feedback.

What the rollout gates judge a canary by, next to the stable version, over the same window.
Panes are float64 vectors that only ever add, so the panes of every worker and replica
merge by summing (through the same `PaneStore` as the drift panes).
"""

from __future__ import annotations

import bisect
import math
import time
from collections.abc import Iterable

import msgspec
import numpy as np

from monitor.metrics import LATENCY_BUCKETS

# Layout of a pane: calls, 5xx, one count per latency bucket (+Inf last), then feedback.
CALLS, ERRORS = 0, 1
LATENCY = slice(2, 2 + len(LATENCY_BUCKETS) + 1)
LABELLED, CORRECT, ABS_ERROR = LATENCY.stop, LATENCY.stop + 1, LATENCY.stop + 2
WIDTH = ABS_ERROR + 1


class Outcomes(msgspec.Struct, frozen=True, kw_only=True):
    """A version's outcomes over a window (the sum of its panes)."""

    calls: int
    errors: int
    latency_counts: tuple[int, ...]  # per bucket of LATENCY_BUCKETS, then +Inf
    labelled: int
    correct: int
    abs_error: float

    @property
    def error_rate(self) -> float:
        """Share of calls answered 5xx (NaN without calls)."""
        return self.errors / self.calls if self.calls else math.nan

    def latency_quantile(self, q: float) -> float:
        """The q-quantile of latency, interpolated in its bucket as Prometheus does."""
        total = sum(self.latency_counts)
        if not total:
            return math.nan
        rank, seen = q * total, 0
        for index, count in enumerate(self.latency_counts):
            if seen + count >= rank and count:
                if index == len(LATENCY_BUCKETS):
                    return float(LATENCY_BUCKETS[-1])  # in +Inf: the highest finite bound
                low = 0.0 if index == 0 else LATENCY_BUCKETS[index - 1]
                return low + (LATENCY_BUCKETS[index] - low) * (rank - seen) / count
            seen += count
        return float(LATENCY_BUCKETS[-1])

    @property
    def accuracy(self) -> float:
        """Share of labelled predictions that were right (classification)."""
        return self.correct / self.labelled if self.labelled else math.nan

    @property
    def mean_abs_error(self) -> float:
        """Mean absolute error of labelled predictions (regression)."""
        return self.abs_error / self.labelled if self.labelled else math.nan


class TrafficPanes:
    """The outcome panes of every version this process served; O(1) per call."""

    def __init__(self, *, pane_seconds: float, max_panes: int) -> None:
        self.pane_seconds = pane_seconds
        self._max_panes = max_panes
        # Only touched from the event loop (calls, feedback, evaluations): no lock needed.
        # Plain lists: a Python float increment is several times cheaper than a numpy one.
        self._panes: dict[tuple[str, int], dict[int, list[float]]] = {}

    def record(self, model: str, version: int, status: int, seconds: float) -> None:
        """Count one finished call."""
        pane = self._pane(model, version)
        pane[CALLS] += 1
        if status >= 500:
            pane[ERRORS] += 1
        pane[LATENCY.start + bisect.bisect_left(LATENCY_BUCKETS, seconds)] += 1

    def record_label(self, model: str, version: int, correct: bool, abs_error: float) -> None:
        """Count one prediction whose ground truth arrived."""
        pane = self._pane(model, version)
        pane[LABELLED] += 1
        pane[CORRECT] += correct
        pane[ABS_ERROR] += abs_error

    def own(self, model: str, version: int) -> dict[float, bytes]:
        """This process's panes of a version, by start, as bytes for a `PaneStore`."""
        panes = self._panes.get((model, version), {})
        return {
            number * self.pane_seconds: np.array(pane, dtype="<f8").tobytes()
            for number, pane in panes.items()
        }

    def _pane(self, model: str, version: int) -> list[float]:
        number = int(time.time() // self.pane_seconds)
        panes = self._panes.setdefault((model, version), {})
        pane = panes.get(number)
        if pane is None:
            pane = panes[number] = [0.0] * WIDTH
            for old in sorted(panes)[: -self._max_panes]:
                del panes[old]
        return pane


def outcomes(panes: Iterable[bytes]) -> Outcomes:
    """The sum of panes (from every process) as a version's outcomes."""
    total = np.zeros(WIDTH)
    for pane in panes:
        total += np.frombuffer(pane, dtype="<f8")
    return Outcomes(
        calls=int(total[CALLS]),
        errors=int(total[ERRORS]),
        latency_counts=tuple(int(count) for count in total[LATENCY]),
        labelled=int(total[LABELLED]),
        correct=int(total[CORRECT]),
        abs_error=float(total[ABS_ERROR]),
    )
