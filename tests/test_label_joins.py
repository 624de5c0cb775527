"""Label feedback across replicas: two gateway processes on one real Redis, predictions
served by one and labelled through the other; the shared log's bounds; Redis going away."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import polars as pl
import pytest
import redis

from registry import ModelRegistry
from tests.conftest import LABELLER, RedisServer, running_gateway

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(60)]
FAST = {
    "DRIFTGATE_SAMPLE_RATE": "1",
    "DRIFTGATE_DRIFT_INTERVAL_SECONDS": "0.2",
    "DRIFTGATE_DRIFT_PANE_SECONDS": "1",
}


@pytest.fixture
def wine_home(tmp_path: Path, artifacts: Path) -> Path:
    """A registry holding the wine classifier (outputs `label` and `probabilities`)."""
    ModelRegistry(tmp_path / "models").register(
        "wine",
        artifacts / "demo" / "model.onnx",
        artifacts / "demo" / "wine.parquet",
        target="target",
    )
    return tmp_path


@pytest.fixture
def wine_rows(artifacts: Path) -> list[list[float]]:
    frame = pl.read_parquet(artifacts / "demo" / "wine.parquet").drop("target")
    return [list(row) for row in frame.rows()]


@contextlib.contextmanager
def two_gateways(
    home: Path, redis_server: RedisServer, **environ: str
) -> Iterator[tuple[httpx.Client, httpx.Client]]:
    """Gateways A and B on one Redis, sampling every call, with a client for each."""
    settings = {**FAST, "DRIFTGATE_REDIS_URL": redis_server.url, **environ}
    with (
        running_gateway(home, **settings) as first,
        running_gateway(home, **settings) as second,
        httpx.Client(base_url=first, timeout=10) as one,
        httpx.Client(base_url=second, timeout=10) as two,
    ):
        yield one, two


def predict(client: httpx.Client, request_id: str, row: list[float]) -> int:
    """One call; the predicted class."""
    body = {
        "id": request_id,
        "inputs": [{"name": "input", "shape": [1, 13], "datatype": "FP32", "data": row}],
    }
    response = client.post("/v2/models/wine/infer", json=body)
    assert response.status_code == 200, response.text
    (label,) = [output for output in response.json()["outputs"] if output["name"] == "label"]
    return int(label["data"][0])


def label(client: httpx.Client, items: list[dict[str, Any]]) -> dict[str, Any]:
    response = client.post("/v1/feedback", json={"items": items}, headers=LABELLER)
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


def label_until_joined(client: httpx.Client, items: list[dict[str, Any]]) -> int:
    """Post labels until none is unknown (a prediction reaches Redis a few milliseconds
    after it is served, off the request path); returns how many were accepted."""
    accepted, deadline = 0, time.monotonic() + 10
    while items:
        result = label(client, items)
        assert (result["expired"], result["invalid"]) == ([], []), result
        accepted += result["accepted"]
        items = [item for item in items if item["id"] in set(result["unknown"])]
        assert time.monotonic() < deadline, result
        time.sleep(0.05 if items else 0)
    return accepted


def quality(client: httpx.Client, labelled: int) -> dict[str, Any]:
    """The version's quality once it counts `labelled` labels."""
    deadline = time.monotonic() + 10
    while True:
        response = client.get("/v1/models/wine/versions/1/drift")
        if response.status_code == 200 and response.json()["quality"]["labelled"] == labelled:
            report: dict[str, Any] = response.json()["quality"]
            return report
        assert time.monotonic() < deadline, response.text
        time.sleep(0.1)


def fallbacks(client: httpx.Client, reason: str) -> float:
    """The value of `driftgate_prediction_log_fallbacks_total{reason}` (0 if absent)."""
    prefix = f'driftgate_prediction_log_fallbacks_total{{reason="{reason}"}} '
    lines = [line for line in client.get("/metrics").text.splitlines() if line.startswith(prefix)]
    return float(lines[0].removeprefix(prefix)) if lines else 0.0


def test_labels_sent_to_another_replica_join_and_count_on_both(
    wine_home: Path, wine_rows: list[list[float]], redis_server: RedisServer
) -> None:
    with two_gateways(wine_home, redis_server) as (a, b):
        predicted = [predict(a, f"a{index}", row) for index, row in enumerate(wine_rows[:20])]
        # Fifteen labels agree with the prediction, five do not: realized accuracy 0.75.
        items = [
            {"id": f"a{index}", "label": value if index < 15 else (value + 1) % 3}
            for index, value in enumerate(predicted)
        ]
        assert label_until_joined(b, items) == 20
        # Joined once in the whole cluster, even by its server: the same label again is a
        # retry (accepted, not counted), another label unknown.
        again = label(a, items[:1])
        assert (again["accepted"], again["unknown"]) == (1, [])
        other = label(a, [{"id": "a0", "label": (items[0]["label"] + 1) % 3}])
        assert (other["accepted"], other["unknown"]) == (0, ["a0"])
        for client in (a, b):  # scored on B; the panes of both merge through Redis
            report = quality(client, labelled=20)
            assert report["realized_accuracy"] == pytest.approx(0.75)


def test_the_shared_log_is_bounded_by_its_capacity_and_its_age(
    wine_home: Path, wine_rows: list[list[float]], redis_server: RedisServer
) -> None:
    store = redis.Redis.from_url(redis_server.url, decode_responses=True)
    bounds = {"DRIFTGATE_FEEDBACK_CAPACITY": "5", "DRIFTGATE_FEEDBACK_MAX_AGE_SECONDS": "2"}
    with two_gateways(wine_home, redis_server, **bounds) as (a, b):
        predicted = [predict(a, f"c{index}", row) for index, row in enumerate(wine_rows[:8])]
        deadline = time.monotonic() + 5
        while store.zscore("driftgate:predictions:index", "c7") is None:
            assert time.monotonic() < deadline, "predictions never reached Redis"
            time.sleep(0.05)
        kept = store.zrange("driftgate:predictions:index", 0, -1)
        assert kept == [f"c{index}" for index in range(3, 8)]  # the oldest three evicted
        assert store.hlen("driftgate:predictions") == 5
        result = label(b, [{"id": f"c{i}", "label": value} for i, value in enumerate(predicted)])
        assert result["expired"] == ["c0", "c1", "c2"]
        assert result["accepted"] == 5

        predict(a, "late", wine_rows[8])
        while store.zscore("driftgate:predictions:index", "late") is None:
            time.sleep(0.05)
        time.sleep(2.2)  # past the age limit
        assert label(b, [{"id": "late", "label": 0}])["expired"] == ["late"]
        # Nothing written since: every key of the shared log expires by itself.
        assert 0 < store.pttl("driftgate:predictions") <= 2 * 2000
        deadline = time.monotonic() + 5
        while keys := store.keys("driftgate:predictions*") + store.keys("driftgate:labels*"):
            assert time.monotonic() < deadline, keys
            time.sleep(0.1)


def test_labels_while_redis_is_down_answer_503_and_predictions_go_on(
    wine_home: Path, wine_rows: list[list[float]], redis_server: RedisServer
) -> None:
    with two_gateways(wine_home, redis_server) as (a, b):
        predicted = predict(a, "before", wine_rows[0])
        assert label_until_joined(b, [{"id": "before", "label": predicted}]) == 1
        redis_server.stop()
        started = time.monotonic()
        during = {
            f"during{index}": predict(a if index % 2 else b, f"during{index}", row)
            for index, row in enumerate(wine_rows[1:21])
        }
        assert time.monotonic() - started < 5  # no call waited on Redis
        refused = b.post(
            "/v1/feedback", json={"items": [{"id": "during1", "label": 0}]}, headers=LABELLER
        )
        assert refused.status_code == 503
        assert "unreachable" in refused.json()["error"]
        assert "no label was joined" in refused.json()["error"]
        assert fallbacks(b, "join_unavailable") >= 1
        deadline = time.monotonic() + 5
        while fallbacks(a, "write_failed") < 1:  # the writer noticed and keeps what it has
            assert time.monotonic() < deadline
            time.sleep(0.1)

        redis_server.start()  # empty, as configured: what it held before is gone
        # Predictions served during the outage were kept and are written once Redis is back:
        # their labels join on the other replica, none lost.
        items = [{"id": key, "label": value} for key, value in during.items()]
        assert label_until_joined(b, items[::2]) == 10  # served by B, labelled on B
        assert label_until_joined(b, items[1::2]) == 10  # served by A, labelled on B
