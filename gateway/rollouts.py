"""The rollout controller: canary analysis on an interval, and the decisions that follow.

One leader (see `gateway.leadership`) evaluates every running rollout when it is due and
commits the decision through the deployment manager: the same compare-and-set and audit
entry as an operator's change. A leader that dies mid-rollout leaves the last committed
state; the next leader reads it and goes on, so no decision is repeated or lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

import msgspec

from gateway.approvals import expire_due
from gateway.deployments import DeploymentManager
from gateway.leadership import Leadership
from monitor.business import ValueStats, merge_values
from monitor.drift import DriftMonitor
from monitor.feedback import is_regression
from monitor.gates import OutputWindow, Window, decide, judge, overall
from monitor.panes import PaneStore
from monitor.retraining import RetrainingTrigger
from monitor.traffic import Outcomes, TrafficPanes, outcomes
from monitor.webhooks import WebhookSender, describe_url
from registry.approvals import APPROVAL
from registry.deployment import Canary, Deployment, PolicyConflictError
from registry.rollout import (
    Evaluation,
    GateResult,
    RolloutConfig,
    RolloutState,
    RolloutStatus,
    Verdict,
)

logger = logging.getLogger(__name__)
CONTROLLER = "controller"
TICK_SECONDS = 0.5  # how often the leader looks for due rollouts
# Every process publishes its outcome panes of this many intervals back; an exchange deletes
# older panes from the shared store, so whoever reads them looks no further back.
PUBLISHED_INTERVALS = 2


class RolloutController:
    """Starts, steers and judges rollouts."""

    def __init__(
        self,
        *,
        manager: DeploymentManager,
        monitor: DriftMonitor,
        traffic: TrafficPanes,
        panes: PaneStore,
        leadership: Leadership,
        retraining: RetrainingTrigger | None = None,
        webhooks: WebhookSender | None = None,
    ) -> None:
        """`retraining`, when given, is checked by the leader after every round; `webhooks`
        delivers the gate and decision webhooks (unsigned by default)."""
        self._manager = manager
        self._retraining = retraining
        self._monitor = monitor
        self._traffic = traffic
        self._panes = panes
        self._leadership = leadership
        self._task: asyncio.Task[None] | None = None
        self._webhooks = WebhookSender("") if webhooks is None else webhooks
        self.leading = False  # whether this process led the last round

    async def start(self) -> None:
        """Start the evaluation loop (inside the running loop)."""
        self._task = asyncio.create_task(self._loop(), name="driftgate-rollouts")

    async def close(self) -> None:
        """Stop the loop and give up the lead."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._leadership.close()
        await self._webhooks.close()

    async def begin(
        self, model: str, version: int, config: RolloutConfig, actor: str, reason: str = ""
    ) -> Deployment:
        """Start a rollout of `version`: canary at the first step's weight."""

        def start(current: Deployment) -> Deployment:
            if current.rollout is not None and current.rollout.status in ("running", "paused"):
                raise PolicyConflictError(
                    f"a rollout of {model} version {current.rollout.version} is in progress; "
                    "abort it first"
                )
            now = time.time()
            state = RolloutState(
                version=version,
                status="running",
                config=config,
                started_at=now,
                started_by=actor,
                next_evaluation_at=now + config.interval_seconds,
            )
            return msgspec.structs.replace(
                current, canary=Canary(version=version, weight=config.steps[0]), rollout=state
            )

        return await self._manager.change(model, "rollout.start", actor, reason, start)

    async def steer(self, model: str, action: str, actor: str, reason: str = "") -> Deployment:
        """`pause`, `resume` or `abort` the rollout of `model`."""
        wanted: dict[str, tuple[tuple[RolloutStatus, ...], RolloutStatus]] = {
            "pause": (("running",), "paused"),
            "resume": (("paused",), "running"),
            "abort": (("running", "paused"), "aborted"),
        }
        allowed, status = wanted[action]

        def edit(current: Deployment) -> Deployment:
            rollout = current.rollout
            if rollout is None or rollout.status not in allowed:
                raise PolicyConflictError(
                    f"{model} has no rollout to {action} "
                    f"({'none' if rollout is None else rollout.status})"
                )
            next_at = time.time() + rollout.config.interval_seconds
            changed = msgspec.structs.replace(
                current,
                rollout=msgspec.structs.replace(rollout, status=status, next_evaluation_at=next_at),
            )
            if status == "aborted" and current.canary is not None:
                changed = msgspec.structs.replace(
                    changed, canary=Canary(version=current.canary.version, weight=0.0)
                )
            return changed

        return await self._manager.change(model, f"rollout.{action}", actor, reason, edit)

    async def tick(self, now: float | None = None) -> list[Deployment]:
        """Evaluate every due rollout, if this process leads; returns what changed."""
        now = time.time() if now is None else now
        await self._publish(now)
        self.leading = await self._leadership.lead()
        if not self.leading:
            return []
        changed = []
        for model, deployment in list(self._manager.deployments().items()):
            rollout = deployment.rollout
            if rollout is None or rollout.status != "running" or now < rollout.next_evaluation_at:
                continue
            try:
                changed.append(await self._evaluate(model, deployment, rollout, now))
            except Exception:  # one model's trouble must not stop the others' rollouts
                logger.exception("rollout evaluation of %s failed", model)
        if self._retraining is not None:
            await self._retraining.check(self._manager.deployments())
        await expire_due(self._manager, now)  # pending changes of protected models
        return changed

    async def _publish(self, now: float) -> None:
        """Share this process's outcome panes of every version in a rollout, leader or not:
        the leader judges the traffic of all processes."""
        for model, deployment in self._manager.deployments().items():
            rollout = deployment.rollout
            if rollout is None or rollout.status != "running":
                continue
            since = now - PUBLISHED_INTERVALS * rollout.config.interval_seconds
            for version in (deployment.stable, rollout.version):
                own = self._traffic.own(model, version)
                await self._panes.exchange(f"traffic:{model}:{version}", own, since)
                if rollout.config.gates.business:
                    values = self._traffic.values.own(model, version)
                    await self._panes.exchange(_values_key(model, version), values, since)

    async def _evaluate(
        self, model: str, deployment: Deployment, rollout: RolloutState, now: float
    ) -> Deployment:
        since = rollout.last.at if rollout.last else rollout.started_at
        weight = rollout.config.steps[rollout.step]
        window = await self._window(model, deployment.stable, rollout.version, since)
        if rollout.config.gates.business:
            window = msgspec.structs.replace(
                window,
                canary_values=await self.values(model, rollout.version, since),
                stable_values=await self.values(model, deployment.stable, since),
            )
        results = judge(rollout.config.gates, window, rollout.config.min_samples)
        if rollout.config.gates.webhook:
            results.append(await self._webhook(rollout.config.gates.webhook, model, results))
        evaluation = Evaluation(
            at=now, weight=weight, verdict=overall(results), gates=tuple(results)
        )
        decided = decide(rollout, evaluation).recorded(evaluation)

        def apply(current: Deployment) -> Deployment:
            # Compared by identity and progress: evidence may hold NaN, never equal to itself.
            if _progress(current.rollout) != _progress(rollout):
                raise PolicyConflictError(f"the rollout of {model} changed meanwhile")
            return _deployment_after(current, decided)

        action = {"promoted": "rollout.promote", "rolled_back": "rollout.rollback"}.get(
            decided.status, "rollout.step" if decided.step != rollout.step else "rollout.evaluate"
        )
        reason = "; ".join(f"{r.gate} {r.verdict}: {r.reason}" for r in results)
        changed = await self._manager.change(model, action, CONTROLLER, reason, apply)
        if _held(changed, action):  # a protected model: the promotion awaits a second admin
            action = f"{APPROVAL}request"
        if rollout.config.notify:
            await self._notify(rollout.config.notify, model, action, reason, changed)
        logger.info(
            "rollout of %s v%d: %s -> %s", model, rollout.version, evaluation.verdict, action
        )
        return changed

    async def outcomes(self, model: str, version: int, since: float) -> Outcomes:
        """A version's calls and their outcomes since `since`, over every process's panes
        (those of the last `PUBLISHED_INTERVALS` intervals of a running rollout)."""
        own = self._traffic.own(model, version)
        return outcomes(await self._panes.exchange(f"traffic:{model}:{version}", own, since))

    async def values(self, model: str, version: int, since: float) -> dict[str, ValueStats]:
        """A version's business values since `since`, over every process's panes (published
        while a rollout with a business gate runs)."""
        own = self._traffic.values.own(model, version)
        return merge_values(await self._panes.exchange(_values_key(model, version), own, since))

    async def _window(self, model: str, stable: int, canary: int, since: float) -> Window:
        async def merged(version: int) -> Outcomes:
            return await self.outcomes(model, version, since)

        async def outputs(version: int) -> OutputWindow | None:
            found = await self._monitor.merged_outputs(model, version, since)
            return OutputWindow(*found) if found else None

        report = self._monitor.report(model, canary)
        watch = self._monitor.window(model, canary)
        return Window(
            canary=await merged(canary),
            stable=await merged(stable),
            canary_outputs=await outputs(canary),
            stable_outputs=await outputs(stable),
            canary_input_status=report.inputs.status if report else None,
            regression=watch is not None and is_regression(watch.manifest),
        )

    async def _webhook(self, url: str, model: str, results: list[GateResult]) -> GateResult:
        payload = msgspec.json.encode({"model": model, "gates": results})
        response = await self._webhooks.post("gate", url, payload)
        if response is None:
            return GateResult(
                gate="webhook", verdict="inconclusive", reason=f"{describe_url(url)} unreachable"
            )
        verdict: Verdict = "pass" if response.is_success else "fail"
        return GateResult(
            gate="webhook",
            verdict=verdict,
            reason=f"{describe_url(url)} answered {response.status_code}",
        )

    async def _notify(
        self, url: str, model: str, action: str, reason: str, deployment: Deployment
    ) -> None:
        """Post a decision; a failure is logged and counted, never blocks the rollout."""
        body = {"model": model, "action": action, "reason": reason, "deployment": deployment}
        await self._webhooks.post("notify", url, msgspec.json.encode(body))

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(TICK_SECONDS)
            try:
                await self.tick()
            except Exception:
                logger.exception("rollout controller round failed")


def _values_key(model: str, version: int) -> str:
    # Apart from the drift report's `business:` panes: this exchange, over the last interval
    # only, deletes older panes from the shared hash.
    return f"business-rollout:{model}:{version}"


def _progress(rollout: RolloutState | None) -> tuple[object, ...]:
    if rollout is None:
        return ()
    return (rollout.version, rollout.started_at, rollout.status, rollout.evaluations)


def _deployment_after(current: Deployment, state: RolloutState) -> Deployment:
    """The deployment that carries out a rollout decision."""
    canary = current.canary
    assert canary is not None
    if state.status == "promoted":
        return msgspec.structs.replace(current, stable=canary.version, canary=None, rollout=state)
    if state.status == "rolled_back":
        return msgspec.structs.replace(
            current, canary=Canary(version=canary.version, weight=0.0), rollout=state
        )
    weight = state.config.steps[state.step]
    return msgspec.structs.replace(
        current, canary=Canary(version=canary.version, weight=weight), rollout=state
    )


def _held(deployment: Deployment, action: str) -> bool:
    """Whether `action` was recorded as a pending change instead of applied."""
    approval = deployment.approval
    return approval is not None and approval.status == "pending" and approval.action == action
