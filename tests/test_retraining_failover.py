"""Two gateway processes on one Redis: the leader fires a retraining for a drifting stable
version and is killed; its successor sees the same drift and does not fire again."""

from __future__ import annotations

import contextlib
import signal
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
import redis

from registry import ModelRegistry
from tests.conftest import ADMIN_TOKEN, RedisServer, gateway_process

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(90)]
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
STREAM = "driftgate:retraining"


def send_drifted(url: str, rng: np.random.Generator, rows: int = 40) -> None:
    """One call of `rows` rows whose first feature sits 2 std off the reference."""
    batch = rng.normal(size=(rows, 4)).astype(np.float32)
    batch[:, 0] += 2.0
    body = {
        "inputs": [
            {"name": "x", "shape": [rows, 4], "datatype": "FP32", "data": batch.ravel().tolist()}
        ]
    }
    assert httpx.post(f"{url}/v2/models/affine/infer", json=body).status_code == 200


def leads(url: str) -> bool:
    status = httpx.get(f"{url}/admin/status", headers=ADMIN).json()
    return bool(status["controller"]["leader"])


def inputs_drift(url: str) -> bool:
    report = httpx.get(f"{url}/v1/models/affine/versions/1/drift")
    return report.status_code == 200 and report.json()["inputs"]["status"] == "drift"


def test_a_new_leader_does_not_fire_the_episode_its_predecessor_fired(
    tmp_path: Path, artifacts: Path, redis_server: RedisServer
) -> None:
    ModelRegistry(tmp_path / "models").register(
        "affine", artifacts / "affine.onnx", artifacts / "affine.parquet", target="label"
    )
    environ = {
        "DRIFTGATE_REDIS_URL": redis_server.url,
        "DRIFTGATE_SAMPLE_RATE": "1",
        "DRIFTGATE_DRIFT_PANE_SECONDS": "1",
        "DRIFTGATE_DRIFT_INTERVAL_SECONDS": "0.2",
        "DRIFTGATE_RETRAINING_STREAM": "true",
    }
    store = redis.Redis.from_url(redis_server.url)
    rng = np.random.default_rng(3)
    with contextlib.ExitStack() as stack:
        processes = dict(stack.enter_context(gateway_process(tmp_path, **environ)) for _ in "ab")
        deadline = time.monotonic() + 30
        while store.xlen(STREAM) == 0:  # drift on both until the leader fires
            assert time.monotonic() < deadline, "no retraining event"
            for url in processes:
                send_drifted(url, rng)
            time.sleep(0.1)
        (leader,) = [url for url in processes if leads(url)]
        (survivor,) = [url for url in processes if url != leader]
        processes[leader].send_signal(signal.SIGKILL)
        processes[leader].wait(timeout=10)

        # The survivor takes the lease over (5 s) while the version still drifts, then has
        # several rounds in which the old, per-process episode memory would fire again.
        deadline = time.monotonic() + 20
        while not (leads(survivor) and inputs_drift(survivor)):
            assert time.monotonic() < deadline, "the survivor never led a drifting version"
            send_drifted(survivor, rng)
            time.sleep(0.1)
        for _ in range(20):
            send_drifted(survivor, rng)
            time.sleep(0.1)

        assert leads(survivor)
        assert inputs_drift(survivor)
        assert store.xlen(STREAM) == 1
        entries = httpx.get(f"{survivor}/admin/audit?model=affine", headers=ADMIN).json()
        fired = [e for e in entries["entries"] if e["action"] == "retraining.requested"]
        assert len(fired) == 1
        assert store.pttl("driftgate:retraining:episode:affine:1") > 0  # the episode goes on
