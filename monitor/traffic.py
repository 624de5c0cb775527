"""Per-version outcomes in time panes: calls, server errors, latency, label feedback, and
the expected accuracy of sampled predictions.

What the rollout gates judge a canary by, next to the stable version, over the same window,
and what the drift report's model quality is read from. Panes are float64 vectors that only
ever add, so the panes of every worker and replica merge by summing (through the same
`PaneStore` as the drift panes).
"""

from __future__ import annotations

import bisect
import math
import time
from collections.abc import Iterable

import msgspec
import numpy as np

from monitor.business import ValuePanes
from monitor.metrics import LATENCY_BUCKETS

# Layout of a pane: calls, 5xx, one count per latency bucket (+Inf last), then feedback,
# then the accuracy estimate. New columns only ever go at the end (see `outcomes`).
CALLS, ERRORS = 0, 1
LATENCY = slice(2, 2 + len(LATENCY_BUCKETS) + 1)
LABELLED, CORRECT, ABS_ERROR = LATENCY.stop, LATENCY.stop + 1, LATENCY.stop + 2
SQUARED_ERROR = ABS_ERROR + 1  # sum of squared absolute errors: the MAE's standard error
# Sampled rows given an expected accuracy a, the sum of a, and the sum of a(1 - a): the
# variance of the number right if each row is right with its own chance (Poisson binomial).
ESTIMATED_ROWS, ESTIMATED_CORRECT, ESTIMATED_VARIANCE = range(SQUARED_ERROR + 1, SQUARED_ERROR + 4)
WIDTH = ESTIMATED_VARIANCE + 1


class Outcomes(msgspec.Struct, frozen=True, kw_only=True):
    """A version's outcomes over a window (the sum of its panes)."""

    calls: int
    errors: int
    latency_counts: tuple[int, ...]  # per bucket of LATENCY_BUCKETS, then +Inf
    labelled: int
    correct: int
    abs_error: float
    squared_error: float = 0.0
    estimated_rows: int = 0
    estimated_correct: float = 0.0  # sum of the rows' expected accuracy
    estimated_variance: float = 0.0  # sum of a(1 - a)

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

    @property
    def accuracy_error(self) -> float:
        """Standard error of `accuracy` (binomial)."""
        p = self.accuracy
        return math.sqrt(p * (1.0 - p) / self.labelled) if self.labelled else math.nan

    @property
    def mean_abs_error_error(self) -> float:
        """Standard error of `mean_abs_error`, from the spread of the absolute errors."""
        if not self.labelled:
            return math.nan
        mean = self.mean_abs_error
        variance = max(self.squared_error / self.labelled - mean * mean, 0.0)
        return math.sqrt(variance / self.labelled)

    @property
    def estimated_accuracy(self) -> float:
        """Mean expected accuracy of the sampled rows (NaN without any)."""
        return self.estimated_correct / self.estimated_rows if self.estimated_rows else math.nan

    @property
    def estimated_accuracy_error(self) -> float:
        """Sampling error of `estimated_accuracy`: sqrt(sum a(1 - a)) / n, the standard
        deviation of the realized accuracy if every row is right with its chance a."""
        if not self.estimated_rows:
            return math.nan
        return math.sqrt(self.estimated_variance) / self.estimated_rows


class TrafficPanes:
    """The outcome panes of every version this process served; O(1) per call."""

    def __init__(self, *, pane_seconds: float, max_panes: int) -> None:
        self.pane_seconds = pane_seconds
        self._max_panes = max_panes
        # Only touched from the event loop (calls, feedback, evaluations): no lock needed.
        # Plain lists: a Python float increment is several times cheaper than a numpy one.
        self._panes: dict[tuple[str, int], dict[int, list[float]]] = {}
        # Business values from feedback: named, so in panes of their own (`monitor.business`).
        self.values = ValuePanes(pane_seconds=pane_seconds, max_panes=max_panes)

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
        pane[SQUARED_ERROR] += abs_error * abs_error

    def record_estimates(self, model: str, version: int, expected: np.ndarray) -> None:
        """Count sampled rows with their expected accuracy (each in [0, 1])."""
        if not expected.size:
            return
        pane = self._pane(model, version)
        pane[ESTIMATED_ROWS] += expected.size
        pane[ESTIMATED_CORRECT] += float(expected.sum())
        pane[ESTIMATED_VARIANCE] += float((expected * (1.0 - expected)).sum())

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
        values = np.frombuffer(pane, dtype="<f8")[:WIDTH]
        # A process of an older release (mid rolling upgrade) writes fewer columns; they are
        # the leading ones, so its panes add with zeros for the columns it does not know.
        total[: values.size] += values
    return Outcomes(
        calls=int(total[CALLS]),
        errors=int(total[ERRORS]),
        latency_counts=tuple(int(count) for count in total[LATENCY]),
        labelled=int(total[LABELLED]),
        correct=int(total[CORRECT]),
        abs_error=float(total[ABS_ERROR]),
        squared_error=float(total[SQUARED_ERROR]),
        estimated_rows=int(total[ESTIMATED_ROWS]),
        estimated_correct=float(total[ESTIMATED_CORRECT]),
        estimated_variance=float(total[ESTIMATED_VARIANCE]),
    )
