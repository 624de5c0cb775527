"""The drift monitor inside the gateway: sampling, evaluation, API, metrics and CLI."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import msgspec
import numpy as np
import pytest
from litestar.testing import TestClient

from gateway.app import create_app
from gateway.settings import Settings
from tests.conftest import RedisServer, running_gateway
from tests.test_metrics import value

Client = TestClient[Any]
FAST = {"sample_rate": 1.0, "drift_interval_seconds": 0.2, "drift_pane_seconds": 1.0}


@pytest.fixture
def monitored(home: Path) -> Iterator[Client]:
    """The app sampling every request and judging drift five times a second."""
    with TestClient(app=create_app(Settings(home=home, **FAST))) as client:  # type: ignore[arg-type]
        yield client


def send_rows(client: httpx.Client | Client, rows: np.ndarray, model: str = "affine") -> None:
    for start in range(0, len(rows), 10):
        batch = rows[start : start + 10]
        body = {
            "inputs": [
                {
                    "name": "x",
                    "shape": list(batch.shape),
                    "datatype": "FP32",
                    "data": batch.reshape(-1).tolist(),
                }
            ]
        }
        assert client.post(f"/v2/models/{model}/infer", json=body).status_code == 200


def wait_for(client: httpx.Client | Client, path: str, done: Any, timeout: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        response = client.get(path)
        if response.status_code == 200 and done(response.json()):
            return response.json()
        assert time.monotonic() < deadline, response.text
        time.sleep(0.1)


def test_reference_like_traffic_is_not_drift(monitored: Client) -> None:
    rows = np.random.default_rng(1).normal(size=(400, 4)).astype(np.float32)
    send_rows(monitored, rows)
    report = wait_for(
        monitored, "/v1/models/affine/versions/2/drift", lambda r: r["inputs"]["samples"] == 400
    )
    assert report["inputs"]["status"] in ("ok", "warn")
    names = {s["name"] for s in report["inputs"]["statistics"]}
    assert names == {"f0", "f1", "f2", "f3", "pca_reconstruction_error"}
    assert report["window_seconds"] > 0
    feature = report["inputs"]["assessment"]["features"][0]
    assert set(feature) >= {"status", "p_value", "level", "thresholds", "streak"}


def test_shifted_traffic_is_drift_on_that_feature_only(monitored: Client) -> None:
    rows = np.random.default_rng(2).normal(size=(400, 4)).astype(np.float32)
    rows[:, 0] += 1.0  # one reference std
    send_rows(monitored, rows)
    wait_for(
        monitored,
        "/v1/models/affine/versions/2/drift",
        lambda r: r["inputs"]["status"] in ("warn", "drift"),
    )
    # `drift` needs a window's worth of rows the first alarm did not see: send them.
    send_rows(monitored, rows + np.float32(0.01))
    report = wait_for(
        monitored, "/v1/models/affine/versions/2/drift", lambda r: r["inputs"]["status"] == "drift"
    )
    verdicts = {f["name"]: f["status"] for f in report["inputs"]["assessment"]["features"]}
    assert verdicts["f0"] == "drift"
    assert all(verdicts[name] != "drift" for name in ("f1", "f2", "f3"))
    f0 = next(s for s in report["inputs"]["statistics"] if s["name"] == "f0")
    assert f0["mean_shift"] == pytest.approx(1.0, abs=0.2)
    # the output y[0] = x0 + 2 shifted with it
    outputs = {f["name"]: f["status"] for f in report["outputs"]["assessment"]["features"]}
    assert outputs["y[0]"] in ("warn", "drift")

    text = monitored.get("/metrics").text
    assert value(text, "driftgate_samples_total", model="affine", version="2") == 80  # requests
    assert (
        value(
            text, "driftgate_drift_version_status", model="affine", version="2", direction="input"
        )
        == 2
    )
    assert (
        value(text, "driftgate_drift_feature_status", model="affine", version="2", feature="f0")
        == 2
    )
    assert value(
        text,
        "driftgate_drift_statistic",
        model="affine",
        version="2",
        feature="f0",
        statistic="mean_shift",
    ) == pytest.approx(f0["mean_shift"])


def test_unknown_or_unmonitored_versions(monitored: Client) -> None:
    response = monitored.get("/v1/models/affine/versions/9/drift")
    assert response.status_code == 404
    assert "not being monitored" in response.json()["error"]
    assert monitored.get("/v1/models/affine/versions/x/drift").status_code == 404
    assert monitored.get("/v1/models/nope/drift").json() == []


def test_sampling_rate_is_honoured(home: Path) -> None:
    settings = Settings(home=home, sample_rate=0.25, drift_interval_seconds=0.2)
    with TestClient(app=create_app(settings)) as client:
        for index in range(400):
            body = {
                "id": f"r{index}",
                "inputs": [
                    {"name": "x", "shape": [1, 4], "datatype": "FP32", "data": [0, 0, 0, 0]}
                ],
            }
            client.post("/v2/models/affine/infer", json=body)
        sampled = value(
            client.get("/metrics").text, "driftgate_samples_total", model="affine", version="2"
        )
    assert sampled is not None
    assert 60 <= sampled <= 140  # 25% of 400, hash-based on the request id


@pytest.mark.e2e
def test_two_gateways_on_one_redis_judge_all_traffic(home: Path, redis_server: RedisServer) -> None:
    environ = {
        "DRIFTGATE_REDIS_URL": redis_server.url,
        "DRIFTGATE_SAMPLE_RATE": "1",
        "DRIFTGATE_DRIFT_INTERVAL_SECONDS": "0.2",
        "DRIFTGATE_DRIFT_PANE_SECONDS": "1",
    }
    rows = np.random.default_rng(3).normal(size=(300, 4)).astype(np.float32)
    with (
        running_gateway(home, **environ) as first,
        running_gateway(home, **environ) as second,
        httpx.Client(base_url=first) as one,
        httpx.Client(base_url=second) as two,
    ):
        send_rows(one, rows[:100])
        send_rows(two, rows[100:])
        for client in (one, two):  # each judges the 300 samples of both
            wait_for(
                client,
                "/v1/models/affine/versions/2/drift",
                lambda r: r["inputs"]["samples"] == 300,
            )
        cli = subprocess.run(
            [sys.executable, "-m", "gateway", "drift", "affine", "--url", first],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert cli.returncode == 0, cli.stderr
        assert "affine version 2" in cli.stdout
        assert "300 samples" in cli.stdout
        assert "f0" in cli.stdout
        assert "WHY" in cli.stdout  # the reason of any feature not ok
        as_json = subprocess.run(
            [
                sys.executable,
                "-m",
                "gateway",
                "drift",
                "affine",
                "--version",
                "2",
                "--json",
                "--url",
                second,
            ],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        (report,) = msgspec.json.decode(as_json.stdout)
        assert report["version"] == 2


def test_undefined_statistics_are_null_and_documented_so(monitored: Client) -> None:
    # msgspec writes NaN as null: before any sample every statistic is undefined. The fuzz
    # tier found the document saying "number" for them.
    report = wait_for(monitored, "/v1/models/affine/versions/2/drift", lambda report: True)
    feature = report["inputs"]["assessment"]["features"][0]
    assert feature["p_value"] is None
    assert report["inputs"]["statistics"][0]["ks"] is None
    schemas = monitored.get("/docs/openapi.json").json()["components"]["schemas"]
    assert schemas["FeatureAssessment"]["properties"]["p_value"]["type"] == ["number", "null"]
    assert schemas["NumericStatistics"]["properties"]["ks"]["type"] == ["number", "null"]
    # `float | None` stays a oneOf with a single null branch
    realized = schemas["QualityReport"]["properties"]["realized_accuracy"]["oneOf"]
    assert realized == [{"type": "number"}, {"type": "null"}]
    # what requests send is finite: their schemas keep plain numbers
    assert schemas["RolloutConfig"]["properties"]["interval_seconds"]["type"] == "number"
    assert schemas["Canary"]["properties"]["weight"]["type"] == "number"
