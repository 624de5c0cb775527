"""Two gateway processes on one Redis: one controller leads, and when it dies mid-rollout
the other takes over without repeating or losing a decision."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pytest

from registry import ModelRegistry
from tests.conftest import ADMIN_TOKEN, TOKENS, RedisServer, free_port, wait_ready

pytestmark = [pytest.mark.e2e, pytest.mark.faults]
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
CONFIG = {
    "interval_seconds": 2.0,
    "min_samples": 15,
    "steps": [20, 40, 60, 80],
    "failure_limit": 3,
    "consecutive_failure_limit": 3,
    "gates": {"max_p99_ratio": None, "max_p99_seconds": 1.0},
}


def start_gateway(home: Path, redis_url: str) -> tuple[str, subprocess.Popen[bytes]]:
    port = free_port()
    environ = {
        **os.environ,
        "DRIFTGATE_TOKENS": TOKENS,
        "DRIFTGATE_REDIS_URL": redis_url,
        "DRIFTGATE_SAMPLE_RATE": "1",
        "DRIFTGATE_DRIFT_PANE_SECONDS": "1",
        "DRIFTGATE_LOG_LEVEL": "warning",
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "gateway", "serve", "--home", str(home), "--port", str(port)],
        env=environ,
    )
    url = f"http://127.0.0.1:{port}"
    wait_ready(url, process)
    return url, process


def send(urls: list[str], rng: np.random.Generator, calls: int) -> None:
    clients = [httpx.Client(base_url=url) for url in urls]
    try:
        for index in range(calls):
            row = rng.normal(size=4).tolist()
            body = {"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32", "data": row}]}
            key = f"k{rng.integers(1 << 40)}"
            clients[index % len(clients)].post(
                "/v2/models/affine/infer", json=body, headers={"x-routing-key": key}
            )
    finally:
        for client in clients:
            client.close()


@pytest.mark.timeout(120)
def test_leader_failover_mid_rollout(
    home: Path, artifacts: Path, redis_server: RedisServer
) -> None:
    first, first_process = start_gateway(home, redis_server.url)
    second, second_process = start_gateway(home, redis_server.url)
    processes = {first: first_process, second: second_process}
    rng = np.random.default_rng(11)
    try:
        ModelRegistry(home / "models").register(  # v3: v2 again, a sound canary
            "affine", artifacts / "affine_v2.onnx", artifacts / "affine.parquet", target="label"
        )
        started = httpx.post(
            f"{first}/admin/models/affine/rollout",
            headers=ADMIN,
            json={"version": 3, "config": CONFIG},
        )
        assert started.status_code == 201, started.text
        leaders = [
            url
            for url in processes
            if httpx.get(f"{url}/admin/status", headers=ADMIN).json()["controller"]["leader"]
        ]
        deadline = time.monotonic() + 10
        while len(leaders) != 1:
            assert time.monotonic() < deadline, "no single leader"
            time.sleep(0.2)
            leaders = [
                url
                for url in processes
                if httpx.get(f"{url}/admin/status", headers=ADMIN).json()["controller"]["leader"]
            ]
        (leader,) = leaders
        (survivor,) = [url for url in processes if url != leader]
        while True:  # traffic until the leader has stepped the canary up at least once
            send([first, second], rng, 100)
            state = httpx.get(f"{survivor}/admin/models/affine/rollout", headers=ADMIN).json()
            if state["step"] >= 1:
                break
            assert time.monotonic() < deadline + 30, json.dumps(state)
        processes[leader].send_signal(signal.SIGKILL)
        processes[leader].wait(timeout=10)
        killed_at = time.monotonic()
        while state["status"] == "running":
            send([survivor], rng, 100)
            state = httpx.get(f"{survivor}/admin/models/affine/rollout", headers=ADMIN).json()
            assert time.monotonic() - killed_at < 60, state
        assert state["status"] == "promoted"
        status = httpx.get(f"{survivor}/admin/status", headers=ADMIN).json()
        assert status["controller"]["leader"] is True

        entries = httpx.get(f"{survivor}/admin/audit?model=affine", headers=ADMIN).json()
        assert entries["intact"] is True
        counts = [
            e["after"]["rollout"]["evaluations"]
            for e in entries["entries"]
            if e["action"].startswith("rollout.") and e["actor"] == "controller"
        ]
        assert counts == list(range(1, len(counts) + 1))  # none repeated, none lost
    finally:
        for process in processes.values():
            if process.poll() is None:
                process.terminate()
                process.wait(timeout=10)
