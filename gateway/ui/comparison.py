"""The canary against the stable version: their calls and outcomes over the traffic every
process keeps published, and their outputs' distributions from the latest drift evaluation."""

from __future__ import annotations

from typing import Literal

import msgspec

from gateway.rollouts import PUBLISHED_INTERVALS, RolloutController
from gateway.ui import feature_charts, words
from gateway.ui.charts import Chart
from monitor.drift import DriftMonitor, LiveCounts
from monitor.feedback import is_regression
from monitor.traffic import Outcomes
from registry.rollout import RolloutState


class TrafficView(msgspec.Struct, frozen=True, kw_only=True):
    """One side of the canary-vs-stable comparison: its calls and their outcomes."""

    version: int
    role: Literal["stable", "canary"]
    calls: int
    errors: int
    error_rate: str  # "0.25%", "n/a" without calls
    p99: str  # "12.5 ms"
    labelled: int
    accuracy: str  # "0.912", "MAE 0.31" for a regressor, "n/a" without labels
    estimated_accuracy: str  # from confidence, "n/a" where not estimated


class OutputComparison(msgspec.Struct, frozen=True, kw_only=True):
    """One output's distribution, canary against stable."""

    name: str
    divergence: str  # the output-divergence gate's figure in the last evaluation, or ""
    chart: Chart


class ComparisonView(msgspec.Struct, frozen=True, kw_only=True):
    """The canary against the stable version."""

    window: str  # the traffic compared: "last 60 s"
    stable: TrafficView
    canary: TrafficView
    outputs: tuple[OutputComparison, ...]  # from the latest drift evaluation of both
    outputs_evaluated: str  # when that was, "" if not yet


async def compare(
    controller: RolloutController,
    monitor: DriftMonitor,
    rollout: RolloutState,
    *,
    model: str,
    stable: int,
    now: float,
) -> ComparisonView:
    """Both versions' calls over the window every process keeps published, and their
    outputs from their latest drift evaluations."""
    canary = rollout.version
    span = PUBLISHED_INTERVALS * rollout.config.interval_seconds
    regression = _regression(monitor, model, canary)
    stable_side = _traffic(
        stable, "stable", await controller.outcomes(model, stable, now - span), regression
    )
    canary_side = _traffic(
        canary, "canary", await controller.outcomes(model, canary, now - span), regression
    )
    divergences: dict[str, float] = {}
    for gate in rollout.last.gates if rollout.last else ():
        if gate.gate == "output_divergence":
            divergences = {
                output: float(figure)
                for output, figure in gate.evidence.items()
                if isinstance(figure, int | float) and not isinstance(figure, bool)
            }
    stable_counts = monitor.live_counts(model, stable)
    canary_counts = monitor.live_counts(model, canary)
    outputs: tuple[OutputComparison, ...] = ()
    evaluated = ""
    if stable_counts is not None and canary_counts is not None:
        outputs = _outputs(stable_counts, canary_counts, divergences)
        evaluated = words.moment(min(stable_counts.evaluated_at, canary_counts.evaluated_at))
    return ComparisonView(
        window=f"last {words.duration(span)}",
        stable=stable_side,
        canary=canary_side,
        outputs=outputs,
        outputs_evaluated=evaluated,
    )


def _regression(monitor: DriftMonitor, model: str, version: int) -> bool:
    watch = monitor.window(model, version)
    return watch is not None and is_regression(watch.manifest)


def _traffic(
    version: int, role: Literal["stable", "canary"], outcomes: Outcomes, regression: bool
) -> TrafficView:
    if regression:
        accuracy = f"MAE {words.number(outcomes.mean_abs_error)}" if outcomes.labelled else "n/a"
    else:
        accuracy = words.number(outcomes.accuracy)
    return TrafficView(
        version=version,
        role=role,
        calls=outcomes.calls,
        errors=outcomes.errors,
        error_rate=words.share(outcomes.error_rate, 2),
        p99=words.seconds(outcomes.latency_quantile(0.99)),
        labelled=outcomes.labelled,
        accuracy=accuracy,
        estimated_accuracy=words.number(outcomes.estimated_accuracy),
    )


def _outputs(
    stable: LiveCounts, canary: LiveCounts, divergences: dict[str, float]
) -> tuple[OutputComparison, ...]:
    """Each output both versions have, stable's distribution against the canary's."""
    theirs = {name: index for index, name in enumerate(stable.output_layout.names)}
    found = []
    for index, profile in enumerate(canary.output_layout.profiles):
        other = theirs.get(profile.name)
        if other is None:
            continue
        chart = feature_charts.stable_and_canary(
            f"{profile.name}: stable and canary",
            (stable.output_layout.profiles[other], (stable.output_layout, stable.outputs, other)),
            (profile, (canary.output_layout, canary.outputs, index)),
        )
        if chart is None:
            continue
        figure = divergences.get(profile.name)
        found.append(
            OutputComparison(
                name=profile.name,
                divergence=words.number(figure) if figure is not None else "",
                chart=chart,
            )
        )
    return tuple(found)
