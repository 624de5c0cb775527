"""Gate verdicts and rollout decisions, as pure functions."""

from __future__ import annotations

import msgspec
import pytest

from monitor.gates import Window, decide, judge, overall
from monitor.traffic import Outcomes
from registry.rollout import Evaluation, GateResult, Gates, RolloutConfig, RolloutState, Verdict

FAST = (1,) * 13  # one call in every latency bucket


def outcomes(calls: int, errors: int = 0, slow: bool = False) -> Outcomes:
    buckets = [0] * 13
    buckets[10 if slow else 2] = calls
    return Outcomes(
        calls=calls,
        errors=errors,
        latency_counts=tuple(buckets),
        labelled=0,
        correct=0,
        abs_error=0.0,
    )


def window(canary: Outcomes, stable: Outcomes | None = None, drift: str | None = "ok") -> Window:
    return Window(
        canary=canary,
        stable=stable or outcomes(500),
        canary_outputs=None,
        stable_outputs=None,
        canary_input_status=drift,  # type: ignore[arg-type]
        regression=False,
    )


GATES = Gates(max_output_divergence=None, max_accuracy_drop=None)


def verdicts(results: list[GateResult]) -> dict[str, Verdict]:
    return {result.gate: result.verdict for result in results}


def test_too_few_calls_is_inconclusive_never_pass_or_fail() -> None:
    results = judge(GATES, window(outcomes(10, errors=10)), min_samples=50)
    assert verdicts(results)["error_rate"] == "inconclusive"
    assert overall(results) == "inconclusive"


def test_errors_latency_and_drift_fail_their_gates() -> None:
    assert verdicts(judge(GATES, window(outcomes(100, errors=5)), 50))["error_rate"] == "fail"
    slow = verdicts(judge(GATES, window(outcomes(100, slow=True)), 50))
    assert slow["latency_p99_ratio"] == "fail"
    drifted = judge(GATES, window(outcomes(100), drift="drift"), 50)
    assert verdicts(drifted)["input_drift"] == "fail"
    healthy = judge(GATES, window(outcomes(100)), 50)
    assert overall(healthy) == "pass", healthy
    for unknown in (None, "insufficient_data"):  # no evidence on the canary's inputs yet
        unjudged = judge(GATES, window(outcomes(100), drift=unknown), 50)
        assert verdicts(unjudged)["input_drift"] == "inconclusive"


def _state(**changes: object) -> RolloutState:
    config = RolloutConfig(steps=(10.0, 50.0), failure_limit=3, consecutive_failure_limit=2)
    state = RolloutState(
        version=2, status="running", config=config, started_at=0.0, started_by="alice"
    )
    return msgspec.structs.replace(state, **changes)


def _evaluation(verdict: Verdict, at: float = 1.0) -> Evaluation:
    return Evaluation(at=at, weight=10.0, verdict=verdict, gates=())


@pytest.mark.parametrize("runs", [1, 5, 50])
def test_inconclusive_neither_steps_nor_counts_as_failure(runs: int) -> None:
    state = _state()
    for index in range(runs):
        state = decide(state, _evaluation("inconclusive", at=float(index)))
    assert (state.status, state.step, state.failures, state.evaluations) == ("running", 0, 0, runs)


def test_passes_step_up_then_promote() -> None:
    state = decide(_state(), _evaluation("pass"))
    assert (state.status, state.step) == ("running", 1)
    assert decide(state, _evaluation("pass")).status == "promoted"


def test_consecutive_failures_roll_back() -> None:
    state = decide(_state(), _evaluation("fail"))
    assert (state.status, state.failures, state.consecutive_failures) == ("running", 1, 1)
    assert decide(state, _evaluation("fail")).status == "rolled_back"


def test_cumulative_failures_roll_back_even_with_passes_between() -> None:
    state = _state(
        config=RolloutConfig(
            steps=(10.0, 20.0, 30.0, 40.0, 50.0), failure_limit=3, consecutive_failure_limit=5
        )
    )
    for verdict in ["fail", "pass", "fail", "inconclusive", "pass"]:
        state = decide(state, _evaluation(verdict))  # type: ignore[arg-type]
    assert (state.status, state.failures, state.consecutive_failures) == ("running", 2, 0)
    assert decide(state, _evaluation("fail")).status == "rolled_back"
