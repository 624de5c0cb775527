"""The two-person rule of protected models on the real app: a change of the stable version
waits for a second admin, never the requester nor the controller; a canary's rollback
never waits; decisions, expiries and stale approvals are audited or refused."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from litestar.testing import TestClient

from gateway.app import create_app
from gateway.cli import main
from gateway.settings import Settings
from registry import ModelRegistry
from tests.conftest import ADMIN_TOKEN, TOKENS, running_gateway
from tests.test_rollouts import FAST, Receiver, traffic_until, webhook  # noqa: F401 (fixture)

Client = TestClient[Any]
BOB_TOKEN = "s3cret-bob"
CONTROLLER_TOKEN = "s3cret-controller"  # a token named like the controller: it must not approve
APPROVERS = f"{TOKENS},bob:admin:{BOB_TOKEN},controller:admin:{CONTROLLER_TOKEN}"
ALICE = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
BOB = {"Authorization": f"Bearer {BOB_TOKEN}"}
CONTROLLER = {"Authorization": f"Bearer {CONTROLLER_TOKEN}"}


def app(home: Path, **settings: Any) -> TestClient[Any]:
    return TestClient(app=create_app(Settings(home=home, tokens=APPROVERS, **settings)))


@pytest.fixture
def gateway(home: Path) -> Iterator[Client]:
    """Affine v1 and v2 (stable), with alice and bob as admins."""
    with app(home) as client:
        yield client


def protect(client: httpx.Client) -> None:
    response = client.post(
        "/admin/models/affine/protect", headers=ALICE, json={"reason": "sets prices"}
    )
    assert response.status_code == 200, response.text
    assert response.json()["protected"] is True


def with_canary(client: httpx.Client, weight: float = 10.0) -> dict[str, Any]:
    body = {"stable": 2, "canary": {"version": 1, "weight": weight}, "reason": "try v1"}
    response = client.put("/admin/models/affine/deployment", headers=ALICE, json=body)
    assert response.status_code == 200, response.text  # the stable version stays: at once
    return dict(response.json())


def ask_promotion(client: httpx.Client) -> str:
    response = client.post("/admin/models/affine/promote", headers=ALICE, json={"reason": "ok"})
    assert response.status_code == 202, response.text
    held = response.json()
    assert (held["stable"], held["canary"]) == (2, {"version": 1, "weight": 10.0})
    assert held["approval"]["status"] == "pending"
    assert held["approval"]["requested_by"] == "alice"
    assert held["approval"]["revision"] == held["revision"]
    return str(held["approval"]["id"])


def deployment(client: httpx.Client) -> dict[str, Any]:
    return dict(client.get("/admin/models/affine/deployment", headers=ALICE).json())


def entries(client: httpx.Client, action: str) -> list[dict[str, Any]]:
    log = client.get("/admin/audit?model=affine", headers=ALICE).json()
    assert log["intact"], log["problem"]
    return [entry for entry in log["entries"] if entry["action"] == action]


def test_an_unprotected_model_changes_at_once(gateway: Client) -> None:
    with_canary(gateway)
    response = gateway.post("/admin/models/affine/promote", headers=ALICE, json={})
    assert response.status_code == 200, response.text
    assert (response.json()["stable"], response.json()["approval"]) == (1, None)
    assert gateway.get("/admin/pending", headers=ALICE).json() == []


def test_a_promotion_waits_for_a_second_admin(gateway: Client) -> None:
    protect(gateway)
    assert entries(gateway, "deployment.protect")[0]["actor"] == "alice"
    with_canary(gateway)
    change = ask_promotion(gateway)
    assert deployment(gateway)["stable"] == 2  # nothing changed but the request
    [report] = gateway.get("/admin/pending?model=affine", headers=ALICE).json()
    assert report["change"]["id"] == change
    assert "canary 1 promoted" in report["summary"]
    assert report["stale"] is False

    refused = gateway.post(f"/admin/pending/{change}/approve", headers=ALICE, json={})
    assert refused.status_code == 403
    assert "second admin" in refused.json()["error"]
    refused = gateway.post(f"/admin/pending/{change}/approve", headers=CONTROLLER, json={})
    assert refused.status_code == 403
    assert "controller cannot approve" in refused.json()["error"]
    reader = {"Authorization": "Bearer s3cret-read"}
    assert gateway.post(f"/admin/pending/{change}/approve", headers=reader).status_code == 403
    assert deployment(gateway)["stable"] == 2

    approved = gateway.post(
        f"/admin/pending/{change}/approve", headers=BOB, json={"reason": "seen"}
    )
    assert approved.status_code == 200, approved.text
    after = approved.json()
    assert (after["stable"], after["canary"], after["protected"]) == (1, None, True)
    assert after["approval"]["status"] == "approved"
    assert gateway.get("/admin/pending", headers=ALICE).json() == []
    body = {"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32", "data": [0.0] * 4}]}
    assert gateway.post("/v2/models/affine/infer", json=body).json()["model_version"] == "1"

    [asked] = entries(gateway, "approval.request")
    assert (asked["actor"], asked["reason"]) == ("alice", "ok")
    assert asked["after"]["approval"]["requested_by"] == "alice"
    [decided] = entries(gateway, "approval.approve")
    assert (decided["actor"], decided["reason"]) == ("bob", "seen")
    assert decided["after"]["approval"]["requested_by"] == "alice"
    assert decided["after"]["approval"]["decided_by"] == "bob"
    assert (decided["before"]["stable"], decided["after"]["stable"]) == (2, 1)

    again = gateway.post(f"/admin/pending/{change}/approve", headers=BOB, json={})
    assert again.status_code == 409
    assert "already approved by bob" in again.json()["error"]


def test_a_change_made_meanwhile_makes_the_approval_fail(gateway: Client) -> None:
    protect(gateway)
    response = gateway.put(
        "/admin/models/affine/deployment", headers=ALICE, json={"stable": 1, "reason": "back"}
    )
    assert response.status_code == 202, response.text  # a rollback to an older stable waits
    change = response.json()["approval"]["id"]
    with_canary(gateway, weight=5.0)  # another operator's change, applied at once
    [report] = gateway.get("/admin/pending", headers=ALICE).json()
    assert report["stale"] is True

    refused = gateway.post(f"/admin/pending/{change}/approve", headers=BOB, json={})
    assert refused.status_code == 409
    assert "changed since" in refused.json()["error"]
    now = deployment(gateway)
    assert (now["stable"], now["canary"]) == (2, {"version": 1, "weight": 5.0})
    assert now["approval"]["status"] == "pending"  # stays, until rejected or expired
    assert entries(gateway, "approval.approve") == []


def test_rejections_and_unknown_ids(gateway: Client) -> None:
    protect(gateway)
    with_canary(gateway)
    change = ask_promotion(gateway)
    missing = gateway.post(f"/admin/pending/{change}/reject", headers=BOB, json={})
    assert missing.status_code == 400
    assert "reason" in missing.json()["error"]
    unknown = gateway.post("/admin/pending/nosuchchange/reject", headers=BOB, json={"reason": "x"})
    assert unknown.status_code == 404
    assert "nosuchchange" in unknown.json()["error"]
    unknown = gateway.post("/admin/pending/nosuchchange/approve", headers=BOB, json={})
    assert unknown.status_code == 404

    rejected = gateway.post(
        f"/admin/pending/{change}/reject", headers=BOB, json={"reason": "not on a Friday"}
    )
    assert rejected.status_code == 200, rejected.text
    assert rejected.json()["stable"] == 2
    assert rejected.json()["canary"] == {"version": 1, "weight": 10.0}
    [entry] = entries(gateway, "approval.reject")
    assert (entry["actor"], entry["reason"]) == ("bob", "not on a Friday")
    assert entry["after"]["approval"]["requested_by"] == "alice"
    assert entry["after"]["approval"]["decided_by"] == "bob"
    late = gateway.post(f"/admin/pending/{change}/approve", headers=BOB, json={})
    assert late.status_code == 409
    assert "already rejected" in late.json()["error"]


def test_a_canary_rollback_never_waits(gateway: Client) -> None:
    protect(gateway)
    with_canary(gateway)
    response = gateway.post("/admin/models/affine/rollback", headers=ALICE, json={"reason": "bad"})
    assert response.status_code == 200, response.text
    assert response.json()["canary"] == {"version": 1, "weight": 0.0}
    assert response.json()["approval"] is None


def test_a_new_request_supersedes_the_pending_one(gateway: Client) -> None:
    protect(gateway)
    with_canary(gateway)
    first = ask_promotion(gateway)
    second = gateway.put(
        "/admin/models/affine/deployment", headers=BOB, json={"stable": 1, "reason": "or back"}
    )
    assert second.status_code == 202, second.text
    [report] = gateway.get("/admin/pending", headers=ALICE).json()
    assert report["change"]["id"] == second.json()["approval"]["id"] != first
    assert gateway.post(f"/admin/pending/{first}/approve", headers=BOB).status_code == 404


def test_lifting_the_protection_needs_approval(gateway: Client) -> None:
    protect(gateway)
    again = gateway.post("/admin/models/affine/protect", headers=BOB, json={})
    assert again.status_code == 409
    response = gateway.post("/admin/models/affine/unprotect", headers=ALICE, json={"reason": "x"})
    assert response.status_code == 202, response.text
    assert response.json()["protected"] is True
    change = response.json()["approval"]["id"]
    approved = gateway.post(f"/admin/pending/{change}/approve", headers=BOB, json={})
    assert approved.status_code == 200, approved.text
    assert approved.json()["protected"] is False


def test_an_expired_change_is_recorded_once_and_cannot_be_approved(home: Path) -> None:
    with app(home, approval_ttl_seconds=1.0) as client:
        protect(client)
        with_canary(client)
        change = ask_promotion(client)
        time.sleep(1.5)  # the leader's round, or the next look, records the expiry
        assert client.get("/admin/pending", headers=ALICE).json() == []
        late = client.post(f"/admin/pending/{change}/approve", headers=BOB, json={})
        assert late.status_code == 410, late.text
        assert "expired" in late.json()["error"]
        time.sleep(1.0)  # more rounds of the leader: none records it again
        [entry] = entries(client, "approval.expire")
        assert entry["actor"] == "controller"
        assert entry["after"]["approval"]["status"] == "expired"
        assert entry["after"]["approval"]["requested_by"] == "alice"
        assert entry["after"]["approval"]["decided_by"] == "controller"
        assert deployment(client)["stable"] == 2


def test_a_rollouts_promotion_waits_and_the_canary_keeps_serving(
    home: Path,
    artifacts: Path,
    webhook: str,  # noqa: F811 (the fixture imported above)
) -> None:
    fast = {"sample_rate": 1.0, "drift_pane_seconds": 1.0, "drift_interval_seconds": 0.5}
    with app(home, **fast) as client:
        ModelRegistry(home / "models").register(  # v3: v2 again, a sound canary
            "affine", artifacts / "affine_v2.onnx", artifacts / "affine.parquet", target="label"
        )
        protect(client)
        config = {**FAST, "notify": f"{webhook}/decisions"}
        body = {"version": 3, "config": config, "reason": "test"}
        started = client.post("/admin/models/affine/rollout", headers=ALICE, json=body)
        assert started.status_code == 201, started.text
        state = traffic_until(client, lambda s: s["status"] != "running")
        assert state["status"] == "paused"  # at its last step, awaiting approval
        held = deployment(client)
        assert (held["stable"], held["canary"]) == (2, {"version": 3, "weight": 80.0})
        change = held["approval"]
        assert (change["requested_by"], change["action"]) == ("controller", "rollout.promote")
        decisions = [r["body"]["action"] for r in Receiver.received if r["path"] == "/decisions"]
        assert decisions[-1] == "approval.request"  # told it waits, not that it was promoted
        assert "rollout.promote" not in decisions

        served = set()
        for key in range(60):  # the canary keeps its weight while the change waits
            payload = {
                "inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32", "data": [0.0] * 4}]
            }
            answer = client.post(
                "/v2/models/affine/infer", json=payload, headers={"x-routing-key": f"k{key}"}
            )
            served.add(answer.json()["model_version"])
        assert served == {"2", "3"}

        approved = client.post(f"/admin/pending/{change['id']}/approve", headers=ALICE, json={})
        assert approved.status_code == 200, approved.text
        after = approved.json()
        assert (after["stable"], after["canary"]) == (3, None)
        assert after["rollout"]["status"] == "promoted"
        [asked] = entries(client, "approval.request")
        assert asked["actor"] == "controller"


@pytest.mark.e2e
def test_the_cli_asks_lists_and_approves(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with running_gateway(home, DRIFTGATE_TOKENS=APPROVERS) as url:
        alice, bob = ["--url", url, "--token", ADMIN_TOKEN], ["--url", url, "--token", BOB_TOKEN]
        assert main(["traffic", "protect", "affine", *alice, "--reason", "prices"]) == 0
        assert main(["traffic", "set", "affine", "--stable", "1", *alice, "--reason", "v1"]) == 0
        assert "awaits a second admin" in capsys.readouterr().out
        assert main(["traffic", "pending", "affine", *alice, "--json"]) == 0
        [report] = json.loads(capsys.readouterr().out)
        change = report["change"]["id"]
        assert main(["traffic", "approve", change, *alice]) == 1
        assert "second admin" in capsys.readouterr().err
        assert main(["traffic", "approve", change, *bob, "--json"]) == 0
        assert json.loads(capsys.readouterr().out)["stable"] == 1
