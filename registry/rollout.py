"""Rollouts: how a canary is walked up to stable, and where a running rollout stands.

Stored on the deployment, so a rollout's state changes with the same compare-and-set and
audit entry as every other change, and a controller that takes over (another worker, after
the leader died) continues from exactly the last recorded decision.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec

from registry.names import ValueName

Percent = Annotated[float, msgspec.Meta(gt=0.0, le=100.0)]
Positive = Annotated[int, msgspec.Meta(ge=1)]
Verdict = Literal["pass", "fail", "inconclusive"]
RolloutStatus = Literal["running", "paused", "promoted", "rolled_back", "aborted"]
# Evaluations a rollout keeps (oldest dropped first): the console shows them all, on every
# replica, from the stored state. A rollout at the default 30 s interval spans 25 minutes.
HISTORY = 50


class ValueGate(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A business value the canary must not lose: its mean per call, from feedback `values`,
    against the stable version's over the same window (one-sided Welch t-test)."""

    name: ValueName
    """The value, as feedback items name it (`revenue`)."""
    higher_is_better: bool = True
    """False for a cost (refunds, handling time): then a higher canary mean is worse."""
    margin: Annotated[float, msgspec.Meta(ge=0.0)] = 0.0
    """How much worse than stable the canary's mean may be, absolute, in the value's own
    unit (0.5 with revenue in euros: up to 50 cents less per call is tolerated)."""
    alpha: Annotated[float, msgspec.Meta(gt=0.0, lt=1.0)] = 0.05
    """The gate fails only when "worse by more than `margin`" is this significant."""
    min_count: Annotated[int, msgspec.Meta(ge=2)] = 30
    """Calls with this value each version needs in the window; fewer is inconclusive."""


class Gates(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """What a canary must show in every evaluation window; None turns a gate off."""

    max_error_rate: Annotated[float, msgspec.Meta(ge=0.0, le=1.0)] | None = 0.01
    """Share of the canary's calls answered 5xx."""
    max_p99_seconds: Annotated[float, msgspec.Meta(gt=0.0)] | None = None
    """The canary's p99 latency, absolute."""
    max_p99_ratio: Annotated[float, msgspec.Meta(gt=0.0)] | None = 1.5
    """The canary's p99 over the stable version's p99 in the same window."""
    max_output_divergence: Annotated[float, msgspec.Meta(ge=0.0)] | None = 0.1
    """Jensen-Shannon divergence (base 2) of predicted-class shares, and mean shift of
    scores in the stable version's reference std, canary against stable."""
    input_drift: bool = True
    """Fail when the canary's sampled inputs drift from its reference profile."""
    max_accuracy_drop: Annotated[float, msgspec.Meta(ge=0.0)] | None = None
    """Accuracy drop (or MAE rise) of the canary against stable, from label feedback. Off
    by default; when on, too few labels keep the evaluation inconclusive, as any gate."""
    min_labels: Positive = 30
    """Labelled predictions each version needs before accuracy is compared."""
    webhook: str | None = None
    """URL POSTed the evaluation's evidence; a 2xx answer passes."""
    business: Annotated[tuple[ValueGate, ...], msgspec.Meta(max_length=16)] = ()
    """Business values the canary must not lose (see `ValueGate`); none by default."""


class RolloutConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """How a rollout proceeds."""

    steps: Annotated[tuple[Percent, ...], msgspec.Meta(min_length=1)] = (5.0, 25.0, 50.0)
    """Canary weights in order (at least one); passing at the last one promotes the canary."""
    interval_seconds: Annotated[float, msgspec.Meta(gt=0.0)] = 30.0
    """Between evaluations; each judges the traffic of its own interval."""
    min_samples: Positive = 50
    """Canary calls an evaluation needs; fewer is inconclusive, never a pass or a fail."""
    failure_limit: Positive = 3
    """Failed evaluations in total (never reset during the rollout) that roll back."""
    consecutive_failure_limit: Positive = 2
    """Failed evaluations in a row that roll back."""
    gates: Gates = Gates()
    notify: str | None = None
    """URL POSTed every decision (action, reason, the rollout state with its evidence)."""


class GateResult(msgspec.Struct, frozen=True, kw_only=True):
    """One gate's verdict with the figures behind it."""

    gate: str
    verdict: Verdict
    reason: str
    evidence: dict[str, Any] = {}


class Evaluation(msgspec.Struct, frozen=True, kw_only=True):
    """One evaluation of a rollout: the overall verdict and every gate's."""

    at: float  # seconds since the epoch
    weight: float  # the canary's weight while the window's traffic was served
    verdict: Verdict
    gates: tuple[GateResult, ...]


class RolloutState(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A rollout in progress or finished."""

    version: int
    status: RolloutStatus
    config: RolloutConfig
    step: int = 0  # index into config.steps of the weight in force
    evaluations: int = 0
    failures: int = 0
    consecutive_failures: int = 0
    started_at: float
    started_by: str
    last: Evaluation | None = None
    next_evaluation_at: float = 0.0
    # The last `HISTORY` evaluations, oldest first, `last` included; empty in states stored
    # before it was kept, which still decode.
    history: tuple[Evaluation, ...] = ()

    def recorded(self, evaluation: Evaluation) -> RolloutState:
        """This state with `evaluation` added to its history (the oldest dropped past
        `HISTORY`)."""
        return msgspec.structs.replace(self, history=(*self.history, evaluation)[-HISTORY:])
