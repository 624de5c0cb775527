"""Real gateway processes on a real redis-server that restarts: empty (without persistence)
the gateways give it back the state they hold, once, with the audit chain continued; with
its data, nothing is restored. A gateway started meanwhile never wins with its defaults."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

import httpx
import msgspec
import pytest
import redis

from registry.deployment import Canary, Deployment
from tests.conftest import ADMIN_TOKEN, TOKENS, RedisServer, free_port, wait_ready

pytestmark = [pytest.mark.e2e, pytest.mark.faults]
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
CANARY = {"stable": 2, "canary": {"version": 1, "weight": 10}, "reason": "try v1 on 10%"}
ROWS = {"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]}]}


class Gateway(NamedTuple):
    url: str
    process: subprocess.Popen[bytes]


@contextlib.contextmanager
def gateways(home: Path, redis_url: str, count: int) -> Iterator[list[Gateway]]:
    """`count` gateway processes on one Redis, started side by side."""
    started: list[Gateway] = []
    environ = {
        **os.environ,
        "DRIFTGATE_TOKENS": TOKENS,
        "DRIFTGATE_REDIS_URL": redis_url,
        "DRIFTGATE_LOG_LEVEL": "warning",
    }
    try:
        for _ in range(count):
            port = str(free_port())
            command = [sys.executable, "-m", "gateway", "serve", "--home", str(home)]
            started.append(
                Gateway(
                    f"http://127.0.0.1:{port}",
                    subprocess.Popen([*command, "--port", port], env=environ),
                )
            )
        for gateway in started:
            wait_ready(gateway.url, gateway.process)
        yield started
    finally:
        for gateway in started:
            gateway.process.send_signal(signal.SIGCONT)  # a stopped one would not terminate
            gateway.process.terminate()
            gateway.process.wait(timeout=10)


def status(url: str) -> dict[str, Any]:
    response = httpx.get(f"{url}/admin/status", headers=ADMIN, timeout=5)
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


def audit(url: str) -> dict[str, Any]:
    response = httpx.get(f"{url}/admin/audit", headers=ADMIN, timeout=5)
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


def wait_for(url: str, wanted: dict[str, Any], timeout: float = 10.0) -> dict[str, Any]:
    """The deployment of affine in force at `url`, once it has the fields of `wanted`."""
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(httpx.TransportError):
            deployment: dict[str, Any] = status(url)["deployments"].get("affine", {})
            if wanted.items() <= deployment.items():
                return deployment
        assert time.monotonic() < deadline, f"{url} never served {wanted}: {deployment}"
        time.sleep(0.05)


def stored(redis_server: RedisServer) -> Deployment | None:
    """The deployment of affine as Redis holds it."""
    with redis.Redis.from_url(redis_server.url) as client:
        raw = client.hget("driftgate:deployments", "affine")
    return None if raw is None else msgspec.json.decode(raw, type=Deployment)


def set_canary(pair: list[Gateway]) -> int:
    """Set the canary through the first gateway; its revision, once the second serves it."""
    first, second = (gateway.url for gateway in pair)
    response = httpx.put(f"{first}/admin/models/affine/deployment", json=CANARY, headers=ADMIN)
    assert response.status_code == 200, response.text
    revision: int = response.json()["revision"]
    wait_for(second, {"canary": CANARY["canary"], "revision": revision})
    return revision


def canary_share(url: str, calls: int = 400) -> float:
    """The share of routing keys that `url` sends to version 1, the canary."""
    with httpx.Client(base_url=url) as client:
        versions = [
            client.post(
                "/v2/models/affine/infer", json=ROWS, headers={"x-routing-key": f"k{index}"}
            ).headers["x-driftgate-version"]
            for index in range(calls)
        ]
    return versions.count("1") / calls


@pytest.mark.timeout(60)
def test_gateways_give_a_redis_restarted_empty_their_state_back(
    home: Path, redis_server: RedisServer
) -> None:
    with gateways(home, redis_server.url, 2) as pair:
        first, second = (gateway.url for gateway in pair)
        revision = set_canary(pair)
        lost = audit(second)["entries"]

        redis_server.stop()
        redis_server.start()  # empty: it kept nothing, as configured

        # Both converge on the canary they held (not a default), one revision on, so that
        # every gateway applies it whatever it served meanwhile; Redis holds it again.
        restored = {"canary": CANARY["canary"], "stable": 2, "revision": revision + 1}
        for url in (first, second):
            wait_for(url, restored)
        in_redis = stored(redis_server)
        assert in_redis is not None
        assert (in_redis.canary, in_redis.revision) == (Canary(version=1, weight=10), revision + 1)

        # The audit log goes on from where it was, says so, and verifies.
        report = audit(first)
        (entry,) = report["entries"]  # the store lost the entries before it
        assert entry["action"] == "state.restored"
        assert entry["actor"] == "controller"
        assert entry["reason"].startswith("Redis lost its state; restored from gateway ")
        assert (entry["seq"], entry["prev_hash"]) == (len(lost) + 1, lost[-1]["hash"])
        assert (report["intact"], report["restored_after"]) == (True, len(lost))
        command = [sys.executable, "-m", "gateway", "audit", "--verify", "--url", second]
        verified = subprocess.run(
            [*command, "--token", ADMIN_TOKEN],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        assert verified.returncode == 0, verified.stdout + verified.stderr
        assert f"audit chain intact from seq {len(lost) + 1}" in verified.stdout
        assert "state.restored" in verified.stdout

        # A gateway started now takes the restored state and writes no default over it.
        with gateways(home, redis_server.url, 1) as (late,):
            assert wait_for(late.url, restored, timeout=1)
            assert 0.04 <= canary_share(late.url) <= 0.16
            assert audit(late.url)["entries"] == report["entries"]
        assert stored(redis_server) == in_redis


@pytest.mark.timeout(60)
def test_defaults_of_a_gateway_started_before_the_restoration_do_not_win(
    home: Path, redis_server: RedisServer
) -> None:
    with gateways(home, redis_server.url, 2) as pair:
        first, second = (gateway.url for gateway in pair)
        revision = set_canary(pair)
        for gateway in pair:  # as if they were slow to reconnect
            gateway.process.send_signal(signal.SIGSTOP)
        redis_server.stop()
        redis_server.start()
        with gateways(home, redis_server.url, 1) as (late,):
            # The newcomer knew nothing and found Redis empty: it wrote its defaults.
            assert stored(redis_server) == Deployment(model="affine", stable=2, revision=1)
            for gateway in pair:
                gateway.process.send_signal(signal.SIGCONT)
            # The gateways that held the canary put it back over the default, and all
            # three serve it.
            restored = {"canary": CANARY["canary"], "revision": revision + 1}
            for url in (first, second, late.url):
                wait_for(url, restored)
            report = audit(late.url)
            actions = [entry["action"] for entry in report["entries"]]
            assert actions.count("state.restored") == 1
            assert actions[-1] == "state.restored"
            assert report["intact"] is True


@pytest.mark.timeout(60)
def test_a_redis_restarted_with_its_data_restores_nothing(
    home: Path, redis_server: RedisServer
) -> None:
    with gateways(home, redis_server.url, 2) as pair:
        first, second = (gateway.url for gateway in pair)
        revision = set_canary(pair)
        entries = audit(first)["entries"]
        with redis.Redis.from_url(redis_server.url) as client:
            client.save()
        redis_server.stop()
        redis_server.start()  # loads the snapshot just saved

        # Changes still flow both ways (both resubscribed), and nothing was restored.
        body = {**CANARY, "canary": {"version": 1, "weight": 20}}
        deadline = time.monotonic() + 10
        while (
            changed := httpx.put(
                f"{second}/admin/models/affine/deployment", json=body, headers=ADMIN
            )
        ).status_code == 503:  # until the second gateway has reconnected
            assert time.monotonic() < deadline, changed.text
            time.sleep(0.05)
        assert changed.status_code == 200, changed.text
        wait_for(first, {"canary": body["canary"], "revision": revision + 1})
        report = audit(first)
        assert report["entries"][:-1] == entries
        assert [e["action"] for e in report["entries"][len(entries) :]] == ["deployment.set"]
        assert (report["intact"], report["restored_after"]) == (True, 0)
