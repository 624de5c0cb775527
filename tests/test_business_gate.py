"""The business value gate: Welch's t-test against scipy on real data, the gate's verdicts,
and rollouts on the real app judged by revenue sent as feedback."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import msgspec
import numpy as np
import pytest
import scipy.stats
from litestar.testing import TestClient
from scipy.special import betainc
from sklearn import datasets

from gateway.app import create_app
from gateway.settings import Settings
from monitor.business import ValuePanes, ValueStats, merge_values
from monitor.value_gate import judge_value
from monitor.welch import regularized_beta, student_t_cdf, welch_test
from registry import ModelRegistry
from registry.rollout import RolloutConfig, ValueGate
from tests.conftest import ADMIN_TOKEN, LABELLER

Client = TestClient[Any]
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


def _split(name: str) -> tuple[np.ndarray, np.ndarray]:
    """Two real samples from scikit-learn's bundled data sets."""
    if name == "diabetes":  # disease progression, by the (centred) sex column
        bunch = datasets.load_diabetes()
        target, sex = bunch.target, bunch.data[:, 1]
        return target[sex > 0], target[sex <= 0]
    if name == "wine":  # alcohol of cultivars 0 and 1
        bunch = datasets.load_wine()
        return bunch.data[bunch.target == 0, 0], bunch.data[bunch.target == 1, 0]
    if name == "cancer":  # mean radius, malignant against benign
        bunch = datasets.load_breast_cancer()
        return bunch.data[bunch.target == 0, 0], bunch.data[bunch.target == 1, 0]
    bunch = datasets.load_iris()  # sepal width of versicolor against virginica: close
    return bunch.data[bunch.target == 1, 1], bunch.data[bunch.target == 2, 1]


def _stats(values: np.ndarray) -> ValueStats:
    """A sample's figures as the gate sees them: recorded in panes, then merged."""
    panes = ValuePanes(pane_seconds=60.0, max_panes=2)
    for value in values:
        panes.record("m", 1, {"v": float(value)})
    return merge_values(panes.own("m", 1).values())["v"]


@pytest.mark.parametrize("name", ["diabetes", "wine", "cancer", "iris"])
@pytest.mark.parametrize("alternative", ["less", "greater"])
@pytest.mark.parametrize("shift", [0.0, -1.5, 4.0])
def test_welch_from_pane_figures_is_scipys(name: str, alternative: str, shift: float) -> None:
    first, second = _split(name)
    a, b = _stats(first), _stats(second)
    ours = welch_test(
        (a.count, a.mean, a.variance),
        (b.count, b.mean, b.variance),
        alternative=alternative,  # type: ignore[arg-type]
        shift=shift,
    )
    theirs = scipy.stats.ttest_ind(first - shift, second, equal_var=False, alternative=alternative)
    assert ours.statistic == pytest.approx(theirs.statistic, abs=1e-6)
    assert ours.df == pytest.approx(theirs.df, rel=1e-9)
    assert ours.pvalue == pytest.approx(theirs.pvalue, rel=1e-4, abs=1e-12)


@pytest.mark.parametrize("df", [0.7, 1.0, 3.3, 29.0, 250.0, 1e4, 1e6])
def test_student_t_cdf_is_scipys(df: float) -> None:
    for t in (-60.0, -7.0, -2.0, -0.3, 0.0, 0.01, 1.7, 12.0):
        assert student_t_cdf(t, df) == pytest.approx(scipy.stats.t.cdf(t, df), rel=1e-6, abs=1e-300)


def test_regularized_beta_is_scipys() -> None:
    for a, b, x in [(0.5, 0.5, 0.3), (3.0, 0.5, 0.99), (2.5, 7.1, 0.2), (40.0, 60.0, 0.45)]:
        assert regularized_beta(x, a, b) == pytest.approx(betainc(a, b, x), rel=1e-10)


def test_samples_without_spread() -> None:
    same = welch_test((5, 2.0, 0.0), (5, 2.0, 0.0), alternative="less")
    assert same.pvalue == 1.0
    lower = welch_test((5, 1.0, 0.0), (5, 2.0, 0.0), alternative="less")
    assert (lower.statistic, lower.pvalue) == (-np.inf, 0.0)
    with pytest.raises(ValueError, match="two values"):
        welch_test((1, 1.0, 0.0), (5, 2.0, 1.0), alternative="less")


# --- the gate's verdicts ----------------------------------------------------------------------

RNG = np.random.default_rng(11)


def _sample(mean: float, size: int, spread: float = 2.0) -> ValueStats:
    return _stats(RNG.normal(mean, spread, size=size))


def test_the_gate_fails_only_on_significant_loss_beyond_the_margin() -> None:
    gate = ValueGate(name="revenue", alpha=0.01, min_count=30)
    stable = _sample(10.0, 400)
    assert judge_value(gate, _sample(8.0, 400), stable).verdict == "fail"
    assert judge_value(gate, _sample(10.0, 400), stable).verdict == "pass"
    assert judge_value(gate, _sample(12.0, 400), stable).verdict == "pass"  # better
    # Two less per call, within a margin of three: not worse than allowed.
    lenient = msgspec.structs.replace(gate, margin=3.0)
    assert judge_value(lenient, _sample(8.0, 400), stable).verdict == "pass"
    # A cost: lower is better, so a higher canary mean is the loss.
    cost = msgspec.structs.replace(gate, higher_is_better=False)
    assert judge_value(cost, _sample(12.0, 400), stable).verdict == "fail"
    assert judge_value(cost, _sample(8.0, 400), stable).verdict == "pass"


def test_too_few_values_are_inconclusive_never_pass_or_fail() -> None:
    gate = ValueGate(name="revenue", min_count=30)
    for canary, stable in [
        (_sample(1.0, 29), _sample(10.0, 400)),  # a clear loss, on too little data
        (_sample(10.0, 400), _sample(10.0, 29)),
        (None, _sample(10.0, 400)),  # no call carried the value
    ]:
        result = judge_value(gate, canary, stable)
        assert result.verdict == "inconclusive"
        assert "30 each needed" in result.reason


def test_rollout_configs_validate_business_gates() -> None:
    config = msgspec.convert(
        {"gates": {"business": [{"name": "revenue", "margin": 0.5}]}}, RolloutConfig
    )
    assert config.gates.business == (ValueGate(name="revenue", margin=0.5),)
    for bad in ({"name": "no way"}, {"name": "r", "alpha": 1.5}, {"name": "r", "min_count": 1}):
        with pytest.raises(msgspec.ValidationError):
            msgspec.convert({"gates": {"business": [bad]}}, RolloutConfig)


# --- rollouts on the real app, judged by revenue sent as feedback -----------------------------

GATE = {"name": "revenue", "min_count": 15, "alpha": 0.01}
CONFIG = {
    "interval_seconds": 2.0,
    "min_samples": 20,
    "steps": [50],
    "failure_limit": 2,
    "consecutive_failure_limit": 2,
    "gates": {"max_p99_ratio": None, "max_p99_seconds": 1.0, "business": [GATE]},
}


@pytest.fixture
def gateway(home: Path, artifacts: Path, settings: Settings) -> Iterator[Client]:
    """Affine v2 stable and v3 (v2 again) as the canary to be, sampling every call."""
    fast = msgspec.structs.replace(
        settings, sample_rate=1.0, drift_pane_seconds=1.0, drift_interval_seconds=0.5
    )
    with TestClient(app=create_app(fast)) as client:
        ModelRegistry(home / "models").register(
            "affine", artifacts / "affine_v2.onnx", artifacts / "affine.parquet", target="label"
        )
        yield client


Revenue = Callable[[int], float | None]  # version served -> the call's revenue (None: none)


def sell_until(client: Client, revenue: Revenue, done: Any, timeout: float = 40.0) -> Any:
    """Calls, then each call's revenue as feedback, until the rollout satisfies `done`."""
    rng = np.random.default_rng(5)
    deadline, key = time.monotonic() + timeout, 0
    while True:
        served: dict[str, int] = {}
        for _ in range(20):
            key += 1
            body = {
                "id": f"call-{key}",
                "inputs": [
                    {
                        "name": "x",
                        "shape": [1, 4],
                        "datatype": "FP32",
                        "data": rng.normal(size=4).tolist(),
                    }
                ],
            }
            response = client.post(
                "/v2/models/affine/infer", json=body, headers={"x-routing-key": f"user-{key}"}
            )
            assert response.status_code == 200, response.text
            served[f"call-{key}"] = int(response.json()["model_version"])
        items = [
            {"id": request_id, "values": {"revenue": value}}
            for request_id, version in served.items()
            if (value := revenue(version)) is not None
        ]
        _send(client, items)
        state = client.get("/admin/models/affine/rollout", headers=ADMIN).json()
        if done(state):
            return state
        assert time.monotonic() < deadline, json.dumps(state, default=str)


def _send(client: Client, items: list[dict[str, Any]]) -> None:
    """Feedback until every item joined (a sampled call reaches the log off its path)."""
    deadline = time.monotonic() + 10
    while items:
        result = client.post("/v1/feedback", json={"items": items}, headers=LABELLER).json()
        assert (result["expired"], result["invalid"]) == ([], []), result
        items = [item for item in items if item["id"] in result["unknown"]]
        assert time.monotonic() < deadline, result
        time.sleep(0.02 if items else 0)


def _start(client: Client) -> None:
    response = client.post(
        "/admin/models/affine/rollout",
        headers=ADMIN,
        json={"version": 3, "config": CONFIG, "reason": "revenue test"},
    )
    assert response.status_code == 201, response.text


def _per_call(mean: dict[int, float]) -> Revenue:
    rng = np.random.default_rng(17)
    return lambda version: float(rng.normal(mean[version], 1.0))


@pytest.mark.timeout(120)
def test_a_canary_earning_less_per_call_is_rolled_back(gateway: Client) -> None:
    _start(gateway)
    state = sell_until(gateway, _per_call({2: 10.0, 3: 7.0}), lambda s: s["status"] != "running")
    assert state["status"] == "rolled_back", json.dumps(state["last"])
    gates = {g["gate"]: g for g in state["last"]["gates"]}
    revenue = gates["business:revenue"]
    assert revenue["verdict"] == "fail"
    assert revenue["evidence"]["canary_mean"] < revenue["evidence"]["stable_mean"]
    assert revenue["evidence"]["p_value"] < GATE["alpha"]
    assert min(revenue["evidence"]["canary_count"], revenue["evidence"]["stable_count"]) >= 15
    deployment = gateway.get("/admin/models/affine/deployment", headers=ADMIN).json()
    assert (deployment["stable"], deployment["canary"]) == (2, {"version": 3, "weight": 0.0})
    last = gateway.get("/admin/audit?model=affine", headers=ADMIN).json()["entries"][-1]
    assert (last["action"], last["actor"]) == ("rollout.rollback", "controller")
    assert "business:revenue fail" in last["reason"]
    assert "revenue mean" in last["reason"]


@pytest.mark.timeout(120)
def test_a_canary_earning_as_much_passes_and_is_promoted(gateway: Client) -> None:
    _start(gateway)
    state = sell_until(gateway, _per_call({2: 10.0, 3: 10.0}), lambda s: s["status"] != "running")
    assert state["status"] == "promoted", json.dumps(state["last"])
    revenue = {g["gate"]: g for g in state["last"]["gates"]}["business:revenue"]
    assert revenue["verdict"] == "pass"
    assert revenue["evidence"]["p_value"] >= GATE["alpha"]
    deployment = gateway.get("/admin/models/affine/deployment", headers=ADMIN).json()
    assert (deployment["stable"], deployment["canary"]) == (3, None)


@pytest.mark.timeout(120)
def test_too_little_revenue_data_keeps_the_rollout_waiting(gateway: Client) -> None:
    _start(gateway)
    # Plenty of calls, but revenue for the first five canary calls only: the other gates
    # pass, this one cannot judge, so the rollout neither steps, promotes nor rolls back.
    canary_calls = iter(range(1_000_000))

    def sparse(version: int) -> float | None:
        return 1.0 if version == 2 or next(canary_calls) < 5 else None

    state = sell_until(gateway, sparse, lambda s: s["evaluations"] >= 3)
    assert (state["status"], state["step"], state["failures"]) == ("running", 0, 0)
    for evaluation in state["history"]:
        gates = {g["gate"]: g for g in evaluation["gates"]}
        assert gates["business:revenue"]["verdict"] == "inconclusive"
        assert evaluation["verdict"] == "inconclusive"
    assert "15 each needed" in state["last"]["gates"][-1]["reason"]
