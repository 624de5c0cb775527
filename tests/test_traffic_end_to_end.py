"""Traffic management with real processes: the operator CLI, two gateways on one Redis,
Redis going away, and policy changes under steady traffic."""

from __future__ import annotations

import asyncio
import json
import shlex
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import ADMIN_TOKEN, READ_TOKEN, RedisServer, running_gateway

pytestmark = pytest.mark.e2e
ROWS = {"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]}]}
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


def operator(url: str, *args: str, token: str = ADMIN_TOKEN) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gateway", *args, "--url", url, "--token", token],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_operator_cli_sets_shows_promotes_and_audits(live_server: str, home: Path) -> None:
    change = shlex.split("traffic set affine --stable 2 --canary 1 --weight 20 --reason canary-v1")
    done = operator(live_server, *change, "--shadow", "1:0")  # v1 cannot be canary and shadow
    assert done.returncode == 1
    assert "400: a version can play only one role" in done.stderr
    done = operator(live_server, *change)
    assert done.returncode == 0, done.stderr
    assert "canary  1        20.00%" in done.stdout
    with httpx.Client(base_url=live_server) as client:
        versions = [
            client.post(
                "/v2/models/affine/infer", json=ROWS, headers={"x-routing-key": f"k{i}"}
            ).headers["x-driftgate-version"]
            for i in range(500)
        ]
    assert abs(versions.count("1") / 5 - 20) <= 5

    shown = operator(live_server, "traffic", "show", "affine", "--json", token=READ_TOKEN)
    assert json.loads(shown.stdout)["canary"] == {"version": 1, "weight": 20.0}
    refused = operator(live_server, "traffic", "rollback", "affine", token=READ_TOKEN)
    assert refused.returncode == 1
    assert "403" in refused.stderr
    assert operator(live_server, "traffic", "promote", "affine").returncode == 0

    audit = operator(live_server, "audit", "affine", "--verify", token=READ_TOKEN)
    assert audit.returncode == 0, audit.stdout
    assert "alice" in audit.stdout
    assert "deployment.promote" in audit.stdout
    assert "audit chain intact" in audit.stdout

    log = home / "state" / "audit.jsonl"
    lines = log.read_bytes().splitlines()
    altered = next(i for i, line in enumerate(lines) if b'"alice"' in line)
    lines[altered] = lines[altered].replace(b'"alice"', b'"mallory"')
    log.write_bytes(b"\n".join(lines) + b"\n")
    tampered = operator(live_server, "audit", "--verify", token=READ_TOKEN)
    assert tampered.returncode == 1
    assert f"broken at entry {altered} (0-based): entry {altered} (seq" in tampered.stdout
    assert "does not match its hash: it was modified" in tampered.stdout

    lines[altered] = b'{"seq": 4, "ti'  # damage that no longer decodes at all
    log.write_bytes(b"\n".join(lines) + b"\n")
    damaged = operator(live_server, "audit", "--verify", token=READ_TOKEN)
    assert damaged.returncode == 1, damaged.stderr
    assert (
        f"broken at entry {altered} (0-based): line {altered + 1} of {log} is not a readable "
        "audit entry"
    ) in damaged.stdout
    listed = operator(live_server, "audit", token=READ_TOKEN)
    assert listed.returncode == 0
    assert "warning: the audit log is damaged" in listed.stderr


def test_two_gateways_on_one_redis_apply_a_change_at_once(
    home: Path, redis_server: RedisServer
) -> None:
    with (
        running_gateway(home, DRIFTGATE_REDIS_URL=redis_server.url) as first,
        running_gateway(home, DRIFTGATE_REDIS_URL=redis_server.url) as second,
    ):
        body = {"stable": 2, "canary": {"version": 1, "weight": 100}}
        response = httpx.put(f"{first}/admin/models/affine/deployment", json=body, headers=ADMIN)
        assert response.status_code == 200, response.text
        changed = time.monotonic()
        while True:
            served = httpx.post(f"{second}/v2/models/affine/infer", json=ROWS)
            if served.headers["x-driftgate-version"] == "1":
                break
            # By Redis pub/sub, not a resync (2 s); a second leaves room for a busy machine.
            assert time.monotonic() - changed < 1.0, "second gateway still on the old policy"
        status = httpx.get(f"{second}/admin/status", headers=ADMIN).json()
        assert status["state_backend"] == {"kind": "redis", "healthy": True, "error": None}
        assert status["deployments"]["affine"]["revision"] == response.json()["revision"]


async def _steady_traffic(url: str, stop: asyncio.Event) -> list[int]:
    """Send predictions back to back until `stop`; returns every status seen."""
    statuses: list[int] = []
    async with httpx.AsyncClient(base_url=url, timeout=10) as client:
        while not stop.is_set():
            response = await client.post("/v2/models/affine/infer", json=ROWS)
            statuses.append(response.status_code)
    return statuses


def test_redis_outage_keeps_serving_refuses_writes_and_resynchronises(
    home: Path, redis_server: RedisServer
) -> None:
    with running_gateway(home, DRIFTGATE_REDIS_URL=redis_server.url) as url:
        body = {"stable": 2, "canary": {"version": 1, "weight": 50}}
        assert (
            httpx.put(f"{url}/admin/models/affine/deployment", json=body, headers=ADMIN).status_code
            == 200
        )

        async def scenario() -> list[int]:
            stop = asyncio.Event()
            traffic = asyncio.create_task(_steady_traffic(url, stop))
            await asyncio.sleep(0.3)
            redis_server.stop()
            async with httpx.AsyncClient(base_url=url, headers=ADMIN) as admin:
                deadline = time.monotonic() + 5
                while (await admin.get("/admin/status")).json()["state_backend"]["healthy"]:
                    assert time.monotonic() < deadline, "outage never reported"
                    await asyncio.sleep(0.05)
                refused = await admin.put("/admin/models/affine/deployment", json={"stable": 1})
                assert refused.status_code == 503, refused.text
                assert "Redis is unreachable" in refused.json()["error"]
                await asyncio.sleep(0.5)
                redis_server.start()  # empty: it kept nothing, as configured
                deadline = time.monotonic() + 10
                while not (await admin.get("/admin/status")).json()["state_backend"]["healthy"]:
                    assert time.monotonic() < deadline, "never reconnected"
                    await asyncio.sleep(0.05)
                written = await admin.put("/admin/models/affine/deployment", json={"stable": 1})
                assert written.status_code == 200, written.text  # the policy in force is the base
            await asyncio.sleep(0.3)
            stop.set()
            return await traffic

        statuses = asyncio.run(scenario())
        assert len(statuses) > 50
        assert set(statuses) == {200}


def test_policy_changes_under_steady_traffic_fail_no_request(live_server: str) -> None:
    async def scenario() -> list[int]:
        stop = asyncio.Event()
        traffic = [asyncio.create_task(_steady_traffic(live_server, stop)) for _ in range(4)]
        async with httpx.AsyncClient(base_url=live_server, headers=ADMIN) as admin:
            for weight in [10, 50, 100, 0]:
                await asyncio.sleep(0.2)
                body = {"stable": 2, "canary": {"version": 1, "weight": weight}}
                response = await admin.put("/admin/models/affine/deployment", json=body)
                assert response.status_code == 200, response.text
            await asyncio.sleep(0.2)
            assert (await admin.post("/admin/models/affine/promote")).status_code == 200
            await asyncio.sleep(0.2)
        stop.set()
        return [status for task in traffic for status in await task]

    statuses = asyncio.run(scenario())
    assert len(statuses) > 100
    assert set(statuses) == {200}
