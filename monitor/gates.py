"""Canary analysis: each gate judges one evaluation window, pass, fail or inconclusive.

Too little data is inconclusive, never a pass and never a fail: a rollout at low traffic
waits instead of flapping. The decision that follows (step, promote, roll back, wait) is
`decide`, a pure function of the rollout's state and the evaluation.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from statistics import NormalDist

import msgspec
import numpy as np

from monitor.business import ValueStats
from monitor.calibration import chi_square_pvalue
from monitor.detector import Status
from monitor.layout import WindowCounts, WindowLayout
from monitor.traffic import Outcomes
from monitor.value_gate import judge_value
from registry.manifest import CategoricalProfile, NumericProfile
from registry.rollout import Evaluation, GateResult, Gates, RolloutConfig, RolloutState, Verdict

SIGNIFICANCE = 0.001  # a divergence must also be this unlikely under "same distribution"


class OutputWindow(msgspec.Struct, frozen=True):
    """A version's output counts over the window, with the layout that reads them."""

    layout: WindowLayout
    counts: WindowCounts


class Window(msgspec.Struct, frozen=True, kw_only=True):
    """Everything the gates look at for one evaluation."""

    canary: Outcomes
    stable: Outcomes
    canary_outputs: OutputWindow | None
    stable_outputs: OutputWindow | None
    canary_input_status: Status | None
    regression: bool  # the model's label feedback is a number (MAE), not a class
    canary_values: dict[str, ValueStats] = {}  # business values from feedback, by name
    stable_values: dict[str, ValueStats] = {}


def judge(gates: Gates, window: Window, min_samples: int) -> list[GateResult]:
    """Every enabled gate's verdict on `window`."""
    results = []
    canary, stable = window.canary, window.stable
    enough = canary.calls >= min_samples
    short = f"{canary.calls} canary calls, {min_samples} needed"
    if gates.max_error_rate is not None:
        results.append(
            _limit(
                "error_rate",
                canary.error_rate,
                gates.max_error_rate,
                enough=enough,
                short=short,
                evidence={"calls": canary.calls, "errors": canary.errors},
            )
        )
    p99 = canary.latency_quantile(0.99)
    if gates.max_p99_seconds is not None:
        results.append(
            _limit(
                "latency_p99",
                p99,
                gates.max_p99_seconds,
                enough=enough,
                short=short,
                evidence={"p99_seconds": p99},
            )
        )
    if gates.max_p99_ratio is not None:
        stable_p99 = stable.latency_quantile(0.99)
        has_stable = stable.calls >= min_samples and stable_p99 > 0
        results.append(
            _limit(
                "latency_p99_ratio",
                p99 / stable_p99 if has_stable else math.nan,
                gates.max_p99_ratio,
                enough=enough and has_stable,
                short=short if not enough else f"{stable.calls} stable calls, {min_samples} needed",
                evidence={"canary_p99_seconds": p99, "stable_p99_seconds": stable_p99},
            )
        )
    if gates.max_output_divergence is not None:
        results.append(_divergence(gates.max_output_divergence, window, min_samples))
    if gates.input_drift:
        status = window.canary_input_status
        # Not yet judged, or too few samples: no evidence either way.
        verdict: Verdict = (
            "inconclusive"
            if status in (None, "insufficient_data")
            else "fail"
            if status == "drift"
            else "pass"
        )
        results.append(
            GateResult(
                gate="input_drift",
                verdict=verdict,
                reason=f"canary inputs: {status or 'not evaluated yet'}",
                evidence={"status": status},
            )
        )
    if gates.max_accuracy_drop is not None:
        results.append(_accuracy(gates, window))
    for gate in gates.business:
        results.append(
            judge_value(
                gate, window.canary_values.get(gate.name), window.stable_values.get(gate.name)
            )
        )
    return results


def overall(results: list[GateResult]) -> Verdict:
    """Any failure fails; otherwise any inconclusive gate makes the whole inconclusive."""
    verdicts = {result.verdict for result in results}
    if "fail" in verdicts:
        return "fail"
    return "inconclusive" if "inconclusive" in verdicts else "pass"


def decide(state: RolloutState, evaluation: Evaluation) -> RolloutState:
    """The rollout after an evaluation: wait, step up, promote, or roll back."""
    config: RolloutConfig = state.config
    state = msgspec.structs.replace(
        state,
        evaluations=state.evaluations + 1,
        last=evaluation,
        next_evaluation_at=evaluation.at + config.interval_seconds,
    )
    if evaluation.verdict == "inconclusive":
        return state  # neither a step forward nor a failure
    if evaluation.verdict == "fail":
        failures, consecutive = state.failures + 1, state.consecutive_failures + 1
        rolled_back = (
            failures >= config.failure_limit or consecutive >= config.consecutive_failure_limit
        )
        return msgspec.structs.replace(
            state,
            failures=failures,
            consecutive_failures=consecutive,
            status="rolled_back" if rolled_back else state.status,
        )
    if state.step + 1 >= len(config.steps):
        return msgspec.structs.replace(state, consecutive_failures=0, status="promoted")
    return msgspec.structs.replace(state, consecutive_failures=0, step=state.step + 1)


def _limit(
    gate: str,
    value: float,
    limit: float,
    *,
    enough: bool,
    short: str,
    evidence: Mapping[str, object],
) -> GateResult:
    evidence = {**evidence, "value": value, "limit": limit}
    if not enough or math.isnan(value):
        return GateResult(gate=gate, verdict="inconclusive", reason=short, evidence=evidence)
    verdict: Verdict = "pass" if value <= limit else "fail"
    return GateResult(
        gate=gate,
        verdict=verdict,
        evidence=evidence,
        reason=f"{value:.4g} {'<=' if verdict == 'pass' else '>'} {limit:g}",
    )


def _divergence(limit: float, window: Window, min_samples: int) -> GateResult:
    """Canary outputs against stable's over the same window: predicted-class shares by
    Jensen-Shannon, scores by mean shift in stable's reference std. A figure over `limit`
    fails only if it is also significant (p < SIGNIFICANCE): small windows differ by chance."""
    canary, stable = window.canary_outputs, window.stable_outputs
    if canary is None or stable is None:
        return GateResult(
            gate="output_divergence",
            verdict="inconclusive",
            reason="no sampled outputs of both versions yet",
        )
    figures: dict[str, float] = {}
    failing: list[str] = []
    counted = math.inf
    stable_profiles = {p.name: p for p in stable.layout.profiles}
    # Bonferroni over the outputs compared, so many outputs do not fail a canary by chance.
    tests = max(1, sum(p.name in stable_profiles for p in canary.layout.profiles))
    level = SIGNIFICANCE / tests
    z_critical = NormalDist().inv_cdf(1 - level / 2)
    for index, profile in enumerate(canary.layout.profiles):
        other = stable_profiles.get(profile.name)
        if other is None or type(other) is not type(profile):
            continue
        theirs_index = stable.layout.names.index(profile.name)
        mine, theirs = canary.counts.counts[index], stable.counts.counts[theirs_index]
        counted = min(counted, float(mine.sum()), float(theirs.sum()))
        if isinstance(profile, CategoricalProfile):
            ours, others = (
                _shares(canary.layout, profile.name, mine),
                _shares(stable.layout, profile.name, theirs),
            )
            figure = _js(ours, others)
            significant = _shares_differ(ours, others, mine.sum(), theirs.sum(), level)
        else:
            assert isinstance(other, NumericProfile)
            scale = other.std or 1.0
            shift = _mean(canary, index) - _mean(stable, theirs_index)
            spread = math.hypot(
                _std(canary, index) / math.sqrt(max(mine.sum(), 1)),
                _std(stable, theirs_index) / math.sqrt(max(theirs.sum(), 1)),
            )
            figure = abs(shift) / scale
            significant = abs(shift) > z_critical * spread
        figures[profile.name] = figure
        if figure > limit and significant:
            failing.append(profile.name)
    if not figures or math.isinf(counted) or counted < min_samples:
        shown = 0 if math.isinf(counted) else int(counted)
        return GateResult(
            gate="output_divergence",
            verdict="inconclusive",
            evidence=figures,
            reason=f"{shown} sampled outputs, {min_samples} needed",
        )
    worst = max(figures.values())
    if failing:
        return GateResult(
            gate="output_divergence",
            verdict="fail",
            evidence=figures,
            reason=f"{', '.join(failing)} diverge from stable (largest "
            f"{worst:.3g}, limit {limit:g})",
        )
    return GateResult(
        gate="output_divergence",
        verdict="pass",
        evidence=figures,
        reason=f"largest divergence {worst:.3g}, limit {limit:g}",
    )


def _accuracy(gates: Gates, window: Window) -> GateResult:
    canary, stable = window.canary, window.stable
    evidence: dict[str, float] = {
        "canary_labels": canary.labelled,
        "stable_labels": stable.labelled,
    }
    if min(canary.labelled, stable.labelled) < gates.min_labels:
        return GateResult(
            gate="accuracy",
            verdict="inconclusive",
            evidence=evidence,
            reason=f"labels: canary {canary.labelled}, stable {stable.labelled}, "
            f"{gates.min_labels} each needed",
        )
    assert gates.max_accuracy_drop is not None
    if window.regression:
        drop = canary.mean_abs_error - stable.mean_abs_error  # a higher error is worse
        evidence |= {"canary_mae": canary.mean_abs_error, "stable_mae": stable.mean_abs_error}
    else:
        drop = stable.accuracy - canary.accuracy
        evidence |= {"canary_accuracy": canary.accuracy, "stable_accuracy": stable.accuracy}
    verdict: Verdict = "pass" if drop <= gates.max_accuracy_drop else "fail"
    return GateResult(
        gate="accuracy",
        verdict=verdict,
        evidence=evidence,
        reason=f"worse than stable by {drop:.3g} (limit {gates.max_accuracy_drop:g})",
    )


def _shares(layout: WindowLayout, name: str, counts: np.ndarray) -> dict[str, float]:
    categories = layout.categories(name)
    total = float(counts[: len(categories) + 1].sum()) or 1.0
    shares = {category: counts[code] / total for code, category in enumerate(categories)}
    shares["<unseen>"] = counts[len(categories)] / total
    return shares


def _js(first: Mapping[str, float], second: Mapping[str, float]) -> float:
    """Jensen-Shannon divergence, base 2, of two share vectors over the union of keys."""
    keys = sorted(first.keys() | second.keys())
    p = np.array([first.get(key, 0.0) for key in keys])
    q = np.array([second.get(key, 0.0) for key in keys])
    m = (p + q) / 2

    def kl(a: np.ndarray) -> float:
        mask = a > 0
        return float(np.sum(a[mask] * np.log2(a[mask] / m[mask])))

    return (kl(p) + kl(q)) / 2


def _shares_differ(
    first: Mapping[str, float],
    second: Mapping[str, float],
    n_first: float,
    n_second: float,
    level: float,
) -> bool:
    """Pearson's chi-square test of homogeneity on the two samples' class counts."""
    keys = sorted(first.keys() | second.keys())
    table = np.array(
        [[first.get(k, 0.0) * n_first for k in keys], [second.get(k, 0.0) * n_second for k in keys]]
    )
    table = table[:, table.sum(axis=0) > 0]
    if table.shape[1] < 2 or min(n_first, n_second) == 0:
        return False
    expected = table.sum(axis=1, keepdims=True) * table.sum(axis=0) / table.sum()
    statistic = float(((table - expected) ** 2 / expected).sum())
    return chi_square_pvalue(statistic, table.shape[1] - 1) < level


def _std(window: OutputWindow, index: int) -> float:
    """A numeric output's raw standard deviation over the window (0 if under two values)."""
    layout, counts = window.layout, window.counts
    n = counts.counts[index, : layout.sizes[index] + 1].sum()
    if n < 2:
        return 0.0
    mean_z = counts.sums[index, 0] / n
    variance_z = max(counts.sums[index, 1] / n - mean_z**2, 0.0)
    return float(math.sqrt(variance_z) / layout.inv_scales[index])


def _mean(window: OutputWindow, index: int) -> float:
    """A numeric output's raw mean: the window keeps sums of z = (x - mean) * inv_scale."""
    layout, counts = window.layout, window.counts
    n = counts.counts[index, : layout.sizes[index] + 1].sum()
    if not n:
        return math.nan
    return float(layout.centers[index] + counts.sums[index, 0] / n / layout.inv_scales[index])
