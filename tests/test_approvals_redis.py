"""Pending changes shared through Redis: asked on one gateway and approved on another after
the first (the controller's leader) stopped; an expiry recorded once among replicas."""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import RedisServer, gateway_process, stop_process
from tests.test_approvals import ALICE, APPROVERS, BOB, app, ask_promotion, protect, with_canary

pytestmark = [pytest.mark.e2e, pytest.mark.faults]


def eventually(check: Callable[[], Any], timeout: float = 20.0) -> Any:
    """The first truthy answer of `check`, polled until `timeout`."""
    deadline = time.monotonic() + timeout
    while not (found := check()):
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)
    return found


def ask_expiry(client: httpx.Client) -> float:
    [report] = client.get("/admin/pending", headers=ALICE).json()
    return float(report["change"]["expires_at"])


def pending(client: httpx.Client) -> list[Any]:
    return list(client.get("/admin/pending", headers=ALICE).json())


def leads(url: str) -> bool:
    status = httpx.get(f"{url}/admin/status", headers=ALICE).json()
    return bool(status["controller"]["leader"])


@pytest.mark.timeout(180)
def test_a_change_asked_on_the_leader_is_approved_after_it_stopped(
    home: Path, redis_server: RedisServer
) -> None:
    environ = {"DRIFTGATE_TOKENS": APPROVERS, "DRIFTGATE_REDIS_URL": redis_server.url}
    with gateway_process(home, **environ) as (first, first_process):
        eventually(lambda: leads(first))
        with gateway_process(home, **environ) as (second, _):
            with httpx.Client(base_url=first) as leader:
                protect(leader)
                with_canary(leader)
                change = ask_promotion(leader)
            assert not leads(second)
            reports = eventually(lambda: httpx.get(f"{second}/admin/pending", headers=ALICE).json())
            assert [report["change"]["id"] for report in reports] == [change]

            stop_process(first_process)
            eventually(lambda: leads(second), timeout=30.0)
            approved = httpx.post(f"{second}/admin/pending/{change}/approve", headers=BOB, json={})
            assert approved.status_code == 200, approved.text
            assert (approved.json()["stable"], approved.json()["canary"]) == (1, None)
            log = httpx.get(f"{second}/admin/audit?model=affine", headers=ALICE).json()
            assert log["intact"], log["problem"]
            actions = [(e["action"], e["actor"]) for e in log["entries"]]
            assert ("approval.request", "alice") in actions
            assert actions[-1] == ("approval.approve", "bob")


@pytest.mark.timeout(120)
def test_an_expiry_is_recorded_once_among_replicas(home: Path, redis_server: RedisServer) -> None:
    shared = {"redis_url": redis_server.url, "approval_ttl_seconds": 1.0}
    with app(home, **shared) as first, app(home, **shared) as second:
        protect(first)
        with_canary(first)
        change = ask_promotion(first)
        eventually(lambda: second.get("/admin/pending", headers=ALICE).json())
        time.sleep(max(0.0, ask_expiry(first) - time.time()))
        # Both look at once, while one of them leads: each would record the expiry alone.
        with ThreadPoolExecutor(4) as pool:
            looks = list(pool.map(pending, [first, second] * 4))
        assert looks == [[]] * 8
        late = second.post(f"/admin/pending/{change}/approve", headers=BOB, json={})
        assert late.status_code == 410, late.text
        log = first.get("/admin/audit?model=affine", headers=ALICE).json()
        assert log["intact"], log["problem"]
        expiries = [e for e in log["entries"] if e["action"] == "approval.expire"]
        assert len(expiries) == 1
        assert expiries[0]["after"]["approval"]["id"] == change
