"""What two versions of a model showed while serving: the live half of a version comparison.

Per version, over the drift window (the panes each drift evaluation merges, from every
worker and replica): calls, the share answered 5xx, latency p50 and p99 (interpolated in
the latency buckets as Prometheus does), and the realized and estimated quality of its
latest drift report. Between the two: their output distributions judged by the rollout's
output-divergence gate (B as if it were A's canary), and, where one ran as a shadow, the
agreement of its answers with the primary's that this process recorded.
"""

from __future__ import annotations

import math
import time

import msgspec

from monitor.agreement import AgreementSnapshot, ShadowAgreement
from monitor.detector import Status
from monitor.drift import DriftMonitor, LiveCounts
from monitor.gates import OutputWindow, Window, judge
from monitor.panes import PaneStore
from monitor.quality import QualityReport
from monitor.traffic import Outcomes, TrafficPanes, outcomes
from registry.rollout import GateResult, Gates, RolloutConfig

# The gate as a rollout runs it by default, every other gate off.
_OUTPUT_GATE = Gates(
    max_error_rate=None,
    max_p99_ratio=None,
    max_output_divergence=Gates().max_output_divergence,
    input_drift=False,
)
_MIN_SAMPLES = RolloutConfig().min_samples


class VersionEvidence(msgspec.Struct, frozen=True, kw_only=True):
    """One version's calls and outcomes over the drift window (None: nothing to show)."""

    version: int
    calls: int
    errors: int
    error_rate: float | None  # share of calls answered 5xx
    latency_p50_seconds: float | None
    latency_p99_seconds: float | None
    drift_status: Status | None  # of its latest drift evaluation; None: not evaluated here
    quality: QualityReport | None  # realized and estimated, of that evaluation


class ShadowEvidence(msgspec.Struct, frozen=True, kw_only=True):
    """How a version's answers as a shadow agreed with the answers returned to callers
    (counted by this process since it started)."""

    shadow: int  # the version that ran as a shadow
    comparisons: int  # calls compared
    errors: int  # shadow runs that failed
    label_agreement: float | None  # share of equal class labels
    mean_abs_diff: float | None  # of scores and values
    mean_rel_diff: float | None


class LiveComparison(msgspec.Struct, frozen=True, kw_only=True):
    """Both versions' live evidence, side by side."""

    window_start: float  # seconds since the epoch: the oldest pane covered
    window_end: float
    a: VersionEvidence
    b: VersionEvidence
    # B's outputs against A's by the output-divergence gate, in their latest drift
    # evaluations; None until both versions have been evaluated by this process.
    outputs: GateResult | None
    shadows: tuple[ShadowEvidence, ...]  # either version as a shadow, where it was one


class LiveEvidence:
    """Collects the live evidence of any two versions from the gateway's monitors."""

    def __init__(
        self,
        monitor: DriftMonitor,
        traffic: TrafficPanes,
        panes: PaneStore,
        agreement: ShadowAgreement,
    ) -> None:
        """`traffic` and `panes` are those the drift monitor's quality reports read."""
        self._monitor = monitor
        self._traffic = traffic
        self._panes = panes
        self._agreement = agreement

    async def compare(self, model: str, a: int, b: int, now: float | None = None) -> LiveComparison:
        """Versions `a` and `b` of `model` over the drift window ending `now`."""
        now = time.time() if now is None else now
        config = self._monitor.config
        # The window start every drift evaluation computes: exchanging these panes with it
        # removes nothing from the shared store that the next evaluation would keep.
        span = config.window_panes * config.pane_seconds
        since = (now // config.pane_seconds) * config.pane_seconds - span
        counts_a = self._monitor.live_counts(model, a)
        counts_b = self._monitor.live_counts(model, b)
        outcomes_a = await self._outcomes(model, a, since)
        outcomes_b = await self._outcomes(model, b, since)
        return LiveComparison(
            window_start=since,
            window_end=now,
            a=self._version(model, a, outcomes_a),
            b=self._version(model, b, outcomes_b),
            outputs=_outputs(outcomes_a, outcomes_b, counts_a, counts_b),
            shadows=tuple(
                _shadow(snapshot)
                for snapshot in self._agreement.snapshot()
                if snapshot.model == model and snapshot.version in (a, b)
            ),
        )

    async def _outcomes(self, model: str, version: int, since: float) -> Outcomes:
        # The panes `QualityMonitor.report` exchanges on every drift evaluation, in every
        # process, under this key: they hold the calls, errors and latencies as well. Read
        # only: pruning them is the drift evaluation's part.
        own = self._traffic.own(model, version)
        key = f"quality:{model}:{version}"
        return outcomes(await self._panes.exchange(key, own, since, prune=False))

    def _version(self, model: str, version: int, window: Outcomes) -> VersionEvidence:
        report = self._monitor.report(model, version)
        return VersionEvidence(
            version=version,
            calls=window.calls,
            errors=window.errors,
            error_rate=_finite(window.error_rate),
            latency_p50_seconds=_finite(window.latency_quantile(0.5)),
            latency_p99_seconds=_finite(window.latency_quantile(0.99)),
            drift_status=report.status if report else None,
            quality=report.quality if report else None,
        )


def _outputs(
    outcomes_a: Outcomes,
    outcomes_b: Outcomes,
    counts_a: LiveCounts | None,
    counts_b: LiveCounts | None,
) -> GateResult | None:
    if counts_a is None or counts_b is None:
        return None
    window = Window(
        canary=outcomes_b,
        stable=outcomes_a,
        canary_outputs=OutputWindow(counts_b.output_layout, counts_b.outputs),
        stable_outputs=OutputWindow(counts_a.output_layout, counts_a.outputs),
        canary_input_status=None,
        regression=False,  # read by the accuracy gate only, which is off here
    )
    (result,) = judge(_OUTPUT_GATE, window, _MIN_SAMPLES)
    return result


def _shadow(snapshot: AgreementSnapshot) -> ShadowEvidence:
    return ShadowEvidence(
        shadow=snapshot.version,
        comparisons=snapshot.comparisons,
        errors=snapshot.errors,
        label_agreement=snapshot.label_agreement,
        mean_abs_diff=snapshot.mean_abs_diff,
        mean_rel_diff=snapshot.mean_rel_diff,
    )


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None
