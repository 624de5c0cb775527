"""A rollout keeps its last evaluations in its stored state, and states stored before it
kept them still decode."""

from __future__ import annotations

import msgspec

from registry.deployment import Deployment
from registry.rollout import HISTORY, Evaluation, GateResult, RolloutConfig, RolloutState


def evaluation(at: float) -> Evaluation:
    gate = GateResult(gate="error_rate", verdict="pass", reason="0 <= 0.01", evidence={"calls": 60})
    return Evaluation(at=at, weight=5.0, verdict="pass", gates=(gate,))


def test_history_keeps_the_last_evaluations_oldest_dropped_first() -> None:
    state = RolloutState(
        version=2, status="running", config=RolloutConfig(), started_at=0.0, started_by="alice"
    )
    for at in range(HISTORY + 7):
        state = state.recorded(evaluation(float(at)))
    assert len(state.history) == HISTORY
    assert [e.at for e in state.history] == [float(at) for at in range(7, HISTORY + 7)]
    decoded = msgspec.json.decode(msgspec.json.encode(state), type=RolloutState)
    assert decoded.history == state.history


def test_a_deployment_stored_before_histories_still_decodes() -> None:
    stored = (
        b'{"model":"wine","stable":1,"canary":{"version":2,"weight":25.0},"shadows":[],'
        b'"rollout":{"version":2,"status":"running","config":{},"step":1,"evaluations":3,'
        b'"failures":0,"consecutive_failures":0,"started_at":1.0,"started_by":"alice",'
        b'"last":{"at":90.0,"weight":5.0,"verdict":"pass","gates":[]},'
        b'"next_evaluation_at":120.0},"revision":7}'
    )
    deployment = msgspec.json.decode(stored, type=Deployment)
    assert deployment.rollout is not None
    assert deployment.rollout.history == ()
    assert deployment.rollout.last is not None
