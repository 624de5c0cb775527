"""The retraining trigger and label feedback on the real app."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest
from litestar.testing import TestClient

from gateway.app import create_app
from gateway.settings import Settings
from registry import ModelRegistry
from tests.conftest import ADMIN_TOKEN, LABELLER, TOKENS

Client = TestClient[Any]
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


@pytest.fixture
def drifting(tmp_path: Path, artifacts: Path) -> Iterator[tuple[Client, Path]]:
    """Affine v1 with f1 marked sensitive, a gateway that samples everything and judges
    drift five times a second, and a retraining command that saves its event."""
    ModelRegistry(tmp_path / "models").register(
        "affine",
        artifacts / "affine.onnx",
        artifacts / "affine.parquet",
        target="label",
        sensitive=["f1"],
    )
    event = tmp_path / "event.json"
    saver = f"import sys; open({str(event)!r}, 'wb').write(sys.stdin.buffer.read())"
    settings = Settings(
        home=tmp_path,
        tokens=TOKENS,
        sample_rate=1.0,
        drift_pane_seconds=1.0,
        drift_interval_seconds=0.2,
        retraining_command=f"{sys.executable} -c {json.dumps(saver)}",
    )
    with TestClient(app=create_app(settings)) as client:
        yield client, event


def send(client: Client, rows: np.ndarray, prefix: str) -> None:
    for index, row in enumerate(rows):
        body = {
            "id": f"{prefix}{index}",
            "inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32", "data": row.tolist()}],
        }
        assert client.post("/v2/models/affine/infer", json=body).status_code == 200


def test_drift_on_the_stable_version_fires_once_with_a_parquet_export(
    drifting: tuple[Client, Path],
) -> None:
    client, event_path = drifting
    rows = np.random.default_rng(5).normal(size=(300, 4)).astype(np.float32)
    rows[:, 0] += 2.0
    send(client, rows, "r")
    deadline = time.monotonic() + 30
    while not event_path.exists():
        assert time.monotonic() < deadline, "no retraining event"
        send(client, rows[:20], "more")
        time.sleep(0.2)
    time.sleep(0.2)
    event = json.loads(event_path.read_text())
    assert (event["model"], event["version"]) == ("affine", 1)
    assert "f0" in event["drifted"]
    export = pl.read_parquet(event["export"])
    assert "f1" not in export.columns  # sensitive: dropped
    assert {"f0", "f2", "f3", "output:y[0]", "output:total", "request_id", "label"} <= set(
        export.columns
    )
    assert export.height == event["rows"] > 0
    assert export.get_column("f0").mean() == pytest.approx(2.0, abs=0.3)

    send(client, rows[:100], "after")  # still drifting: the same episode, no second event
    time.sleep(1.0)
    audit = client.get("/admin/audit?model=affine", headers=ADMIN).json()["entries"]
    fired = [entry for entry in audit if entry["action"] == "retraining.requested"]
    assert len(fired) == 1
    assert fired[0]["actor"] == "controller"


def test_feedback_joins_sampled_predictions_and_reports_the_rest(
    drifting: tuple[Client, Path],
) -> None:
    client, _ = drifting
    send(client, np.zeros((5, 4), np.float32), "f")
    time.sleep(0.3)  # the monitor consumes samples off the request path
    items = [{"id": f"f{index}", "label": 1.0} for index in range(5)]
    items.append({"id": "never-seen", "label": 1.0})
    result = client.post("/v1/feedback", json={"items": items}, headers=LABELLER).json()
    assert result == {"accepted": 5, "unknown": ["never-seen"], "expired": [], "invalid": []}
    # Joined once: the same label again is a retry (accepted, not counted twice), another
    # label for it is unknown.
    again = client.post("/v1/feedback", json={"items": items[:1]}, headers=LABELLER).json()
    assert (again["accepted"], again["unknown"]) == (1, [])
    other = [{"id": "f0", "label": 2.0}]
    assert client.post("/v1/feedback", json={"items": other}, headers=LABELLER).json()[
        "unknown"
    ] == ["f0"]
    bad = client.post("/v1/feedback", json={"items": [{"identifier": "x"}]}, headers=LABELLER)
    assert bad.status_code == 400
