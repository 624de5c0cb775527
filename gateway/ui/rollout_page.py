"""The console's rollout page: where a rollout stands, every evaluation with each gate's
verdict, and the canary against the stable version."""

from __future__ import annotations

import time
from collections.abc import Sequence

import msgspec

from gateway.deployments import DeploymentManager
from gateway.errors import NotFoundError
from gateway.rollouts import RolloutController
from gateway.ui import charts, words
from gateway.ui.charts import Chart
from gateway.ui.comparison import ComparisonView, compare
from gateway.ui.models_page import canary_weight
from monitor.drift import DriftMonitor
from monitor.webhooks import describe_url
from registry.deployment import Deployment
from registry.rollout import Evaluation, Gates, RolloutState, RolloutStatus, Verdict


class GateView(msgspec.Struct, frozen=True, kw_only=True):
    """One gate's verdict in one evaluation."""

    gate: str
    verdict: Verdict
    verdict_class: str  # "status-ok" (pass), "status-drift" (fail), "status-insufficient_data"
    reason: str
    evidence: str  # "calls=120 errors=0 value=0 limit=0.01"
    failing: bool  # a failing gate of a failed evaluation: the one to highlight


class EvaluationView(msgspec.Struct, frozen=True, kw_only=True):
    """One evaluation of the rollout with each gate's verdict."""

    number: int  # 1 for the rollout's first evaluation
    at: str
    weight: str  # the canary's weight over the evaluated window
    verdict: Verdict
    verdict_class: str
    outcome: str  # what followed: "stepped up to 50%", "promoted", "rolled back", "waited"
    failing: tuple[str, ...]  # the failing gates' names
    gates: tuple[GateView, ...]


class RolloutView(msgspec.Struct, frozen=True, kw_only=True):
    """The rollout page: where the rollout stands, how it got there, and the evidence."""

    # Where it stands.
    model: str
    version: int  # the canary
    stable: int
    status: RolloutStatus
    status_class: str
    step: str  # "2 of 3"
    steps: tuple[str, ...]  # "5%", "25%", "50%"
    step_index: int
    weight: str  # the canary's weight now
    started: str
    started_by: str
    evaluated: int  # evaluations so far
    failures: str  # "1 of 3 allowed (1 of 2 in a row)"
    next_evaluation: str  # "" unless running
    rules: tuple[str, ...]  # the gates and limits in words: "error rate at most 1%", ...
    # What an admin may do now: "pause", "resume", "abort", "promote", "rollback".
    actions: tuple[str, ...]
    # How it got there.
    weights: Chart  # the canary's weight over time, each evaluation marked by its verdict
    evaluations: tuple[EvaluationView, ...]  # newest first
    # The evidence now.
    comparison: ComparisonView | None  # None once promoted (stable is the canary)


async def rollout_view(
    manager: DeploymentManager, monitor: DriftMonitor, controller: RolloutController, *, name: str
) -> RolloutView:
    """The rollout of a model, its evaluations and the canary-vs-stable evidence.

    Raises:
        NotFoundError: The model is not deployed or has never had a rollout.
    """
    deployment = manager.deployments().get(name)
    if deployment is None or deployment.rollout is None:
        raise NotFoundError(f"model {name!r} has no rollout")
    rollout = deployment.rollout
    now = time.time()
    history = rollout.history or ((rollout.last,) if rollout.last else ())
    first = rollout.evaluations - len(history) + 1  # the number of the oldest kept
    current = canary_weight(deployment)
    settled = _settled(rollout)
    config = rollout.config
    comparison = None
    if deployment.canary is not None and rollout.status != "promoted":
        comparison = await compare(
            controller, monitor, rollout, model=name, stable=deployment.stable, now=now
        )
    return RolloutView(
        model=name,
        version=rollout.version,
        stable=deployment.stable,
        status=rollout.status,
        status_class=words.rollout_class(rollout.status),
        step=f"{rollout.step + 1} of {len(config.steps)}",
        steps=tuple(words.percent(step) for step in config.steps),
        step_index=rollout.step,
        weight=words.percent(current),
        started=words.moment(rollout.started_at),
        started_by=rollout.started_by,
        evaluated=rollout.evaluations,
        failures=(
            f"{rollout.failures} of {config.failure_limit} allowed "
            f"({rollout.consecutive_failures} of {config.consecutive_failure_limit} in a row)"
        ),
        next_evaluation=(
            words.moment(rollout.next_evaluation_at) if rollout.status == "running" else ""
        ),
        rules=_rules(config.gates, rollout),
        actions=_actions(deployment),
        weights=_weights(rollout, history, settled, current=current, now=now),
        evaluations=tuple(
            _evaluation(
                first + index,
                evaluation,
                following=history[index + 1].weight if index + 1 < len(history) else None,
                rollout=rollout,
                settled=settled,
            )
            for index, evaluation in reversed(list(enumerate(history)))
        ),
        comparison=comparison,
    )


def _evaluation(
    number: int,
    evaluation: Evaluation,
    *,
    following: float | None,
    rollout: RolloutState,
    settled: float,
) -> EvaluationView:
    """One evaluation; `following` is the weight of the next one (None for the newest, which
    `settled` follows)."""
    failed = evaluation.verdict == "fail"
    after = settled if following is None else following
    if evaluation.verdict == "inconclusive":
        outcome = "waited for more evidence"
    elif failed:
        final = following is None and rollout.status == "rolled_back"
        outcome = "rolled back" if final else "failure counted"
    elif following is None and rollout.status == "promoted":
        outcome = "promoted"
    elif after > evaluation.weight:
        outcome = f"stepped up to {words.percent(after)}"
    else:
        outcome = "passed"
    gates = tuple(
        GateView(
            gate=gate.gate,
            verdict=gate.verdict,
            verdict_class=words.verdict_class(gate.verdict),
            reason=gate.reason,
            evidence=words.evidence(gate.evidence),
            failing=failed and gate.verdict == "fail",
        )
        for gate in evaluation.gates
    )
    return EvaluationView(
        number=number,
        at=words.moment(evaluation.at),
        weight=words.percent(evaluation.weight),
        verdict=evaluation.verdict,
        verdict_class=words.verdict_class(evaluation.verdict),
        outcome=outcome,
        failing=tuple(gate.gate for gate in gates if gate.failing),
        gates=gates,
    )


def _settled(rollout: RolloutState) -> float:
    """The weight the newest evaluation left the canary at."""
    if rollout.status == "promoted":
        return 100.0
    if rollout.status == "rolled_back":
        return 0.0
    return rollout.config.steps[rollout.step]  # an abort or pause keeps the step


def _weights(
    rollout: RolloutState,
    history: Sequence[Evaluation],
    settled: float,
    *,
    current: float,
    now: float,
) -> Chart:
    """The weight after each decision, from the start (or the oldest kept evaluation)."""
    interval = rollout.config.interval_seconds
    if len(history) == rollout.evaluations:  # all kept: the line starts with the rollout
        points = [(rollout.started_at, rollout.config.steps[0])]
    else:
        points = [(history[0].at - interval, history[0].weight)]
    for index, evaluation in enumerate(history):
        after = history[index + 1].weight if index + 1 < len(history) else settled
        points.append((evaluation.at, after))
    end = now
    if rollout.status not in ("running", "paused"):
        decided = history[-1].at if history else rollout.started_at
        if rollout.status == "aborted":
            # An operator's steer sets the next evaluation one interval after it.
            decided = max(decided, rollout.next_evaluation_at - interval)
            points.append((decided, current))
        end = decided + interval
    marks = [(e.at, e.weight, e.verdict) for e in history]
    return charts.weight_steps("canary weight over time", points, marks, end=end)


def _rules(gates: Gates, rollout: RolloutState) -> tuple[str, ...]:
    config = rollout.config
    rules = [
        f"every {words.duration(config.interval_seconds)}, with at least "
        f"{config.min_samples} canary calls",
        f"roll back after {config.failure_limit} failed evaluations, or "
        f"{config.consecutive_failure_limit} in a row",
    ]
    if gates.max_error_rate is not None:
        rules.append(f"error rate at most {words.share(gates.max_error_rate, 2)}")
    if gates.max_p99_seconds is not None:
        rules.append(f"p99 latency at most {words.seconds(gates.max_p99_seconds)}")
    if gates.max_p99_ratio is not None:
        rules.append(f"p99 latency at most {gates.max_p99_ratio:g} times stable's")
    if gates.max_output_divergence is not None:
        rules.append(f"output divergence from stable at most {gates.max_output_divergence:g}")
    if gates.input_drift:
        rules.append("no input drift")
    if gates.max_accuracy_drop is not None:
        rules.append(
            f"accuracy at most {gates.max_accuracy_drop:g} under stable's "
            f"({gates.min_labels} labels each)"
        )
    if gates.webhook:
        rules.append(f"{describe_url(gates.webhook)} answers 2xx")
    return tuple(rules)


def _actions(deployment: Deployment) -> tuple[str, ...]:
    rollout, canary = deployment.rollout, deployment.canary
    actions: list[str] = []
    if rollout is not None and rollout.status == "running":
        actions += ["pause", "abort"]
    elif rollout is not None and rollout.status == "paused":
        actions += ["resume", "abort"]
    if canary is not None:
        actions.append("promote")
        if canary.weight > 0:
            actions.append("rollback")
    return tuple(actions)
