"""The admin API on the real app: tokens, deployments, audit, uploads, status."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from litestar.testing import TestClient

from tests.conftest import ADMIN_TOKEN, READ_TOKEN

Client = TestClient[Any]
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
READ = {"Authorization": f"Bearer {READ_TOKEN}"}
ROWS = {"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]}]}


def _versions_served(client: Client, keys: range) -> dict[str, int]:
    served: dict[str, int] = {}
    for key in keys:
        response = client.post(
            "/v2/models/affine/infer", json=ROWS, headers={"x-routing-key": f"user-{key}"}
        )
        assert response.status_code == 200, response.text
        version = response.headers["x-driftgate-version"]
        assert response.json()["model_version"] == version
        served[version] = served.get(version, 0) + 1
    return served


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/admin/models/affine/deployment"),
        ("PUT", "/admin/models/affine/deployment"),
        ("POST", "/admin/models/affine/promote"),
        ("POST", "/admin/models/affine/rollback"),
        ("GET", "/admin/audit"),
        ("GET", "/admin/status"),
        ("POST", "/admin/models/affine/versions"),
    ],
)
def test_every_admin_route_needs_a_valid_token(client: Client, method: str, path: str) -> None:
    for headers in [{}, {"Authorization": "Bearer wrong"}, {"Authorization": ADMIN_TOKEN}]:
        response = client.request(method, path, headers=headers, json={})
        assert response.status_code == 401, (headers, response.text)
        assert "bearer token" in response.json()["error"]
        assert response.headers["www-authenticate"] == "Bearer"


def test_read_tokens_read_but_cannot_write(client: Client) -> None:
    assert client.get("/admin/models/affine/deployment", headers=READ).status_code == 200
    response = client.put("/admin/models/affine/deployment", headers=READ, json={"stable": 1})
    assert response.status_code == 403
    assert "read role" in response.json()["error"]
    assert client.get("/admin/models/affine/deployment", headers=READ).json()["stable"] == 2


def test_canary_split_applies_at_once_and_is_audited(client: Client) -> None:
    assert _versions_served(client, range(50)) == {"2": 50}
    body = {"stable": 2, "canary": {"version": 1, "weight": 20}, "reason": "try v1 again"}
    response = client.put("/admin/models/affine/deployment", headers=ADMIN, json=body)
    assert response.status_code == 200, response.text
    assert response.json()["revision"] == 2
    served = _versions_served(client, range(1000))
    assert abs(served["1"] / 10 - 20) <= 4  # ~20% of 1,000 distinct keys
    roles = {
        client.post(
            "/v2/models/affine/infer", json=ROWS, headers={"x-routing-key": f"user-{k}"}
        ).headers["x-driftgate-role"]
        for k in range(50)
    }
    assert roles == {"stable", "canary"}

    entries = client.get("/admin/audit", headers=READ).json()
    assert entries["intact"] is True
    last = entries["entries"][-1]
    assert (last["actor"], last["action"], last["reason"]) == (
        "alice",
        "deployment.set",
        "try v1 again",
    )
    assert last["before"]["canary"] is None
    assert last["after"]["canary"] == {"version": 1, "weight": 20.0}


def test_promote_and_rollback(client: Client) -> None:
    body = {"stable": 2, "canary": {"version": 1, "weight": 50}}
    client.put("/admin/models/affine/deployment", headers=ADMIN, json=body)
    rolled = client.post("/admin/models/affine/rollback", headers=ADMIN, json={"reason": "bad"})
    assert rolled.status_code == 200, rolled.text
    assert rolled.json()["canary"] == {"version": 1, "weight": 0.0}
    assert _versions_served(client, range(200)) == {"2": 200}
    client.put("/admin/models/affine/deployment", headers=ADMIN, json=body)
    promoted = client.post("/admin/models/affine/promote", headers=ADMIN)
    assert promoted.status_code == 200, promoted.text
    assert (promoted.json()["stable"], promoted.json()["canary"]) == (1, None)
    assert _versions_served(client, range(100)) == {"1": 100}
    again = client.post("/admin/models/affine/promote", headers=ADMIN)
    assert again.status_code == 409
    assert "no canary" in again.json()["error"]
    actions = [e["action"] for e in client.get("/admin/audit", headers=READ).json()["entries"]]
    assert actions[-3:] == ["deployment.rollback", "deployment.set", "deployment.promote"]


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        ({"stable": 9}, 400, "no version 9"),
        ({"stable": 2, "canary": {"version": 1, "weight": 101}}, 400, "<= 100.0"),
        ({"stable": 2, "canary": {"version": 1, "weight": -1}}, 400, ">= 0.0"),
        ({"stable": 2, "canary": {"version": 1, "weight": 1.005}}, 400, "two decimals"),
        ({"stable": 2, "canary": {"version": 2, "weight": 5}}, 400, "only one role"),
        ({"stable": 2, "shadows": [{"version": 7, "percent": 5}]}, 400, "no version 7"),
        ({"stable": 2, "extra": 1}, 400, "extra"),
        ({"canary": None}, 400, "stable"),
    ],
)
def test_invalid_policies_are_refused_and_change_nothing(
    client: Client, body: dict[str, Any], status: int, message: str
) -> None:
    before = client.get("/admin/models/affine/deployment", headers=READ).json()
    response = client.put("/admin/models/affine/deployment", headers=ADMIN, json=body)
    assert response.status_code == status, response.text
    assert message in response.json()["error"]
    assert client.get("/admin/models/affine/deployment", headers=READ).json() == before


def test_a_canary_with_other_inputs_is_a_conflict(client: Client, artifacts: Path) -> None:
    files = {
        "model": ("m.onnx", (artifacts / "lookup.onnx").read_bytes()),
        "reference": ("ref.csv", (artifacts / "lookup.csv").read_bytes()),
    }
    uploaded = client.post("/admin/models/affine/versions", headers=ADMIN, files=files)
    assert uploaded.status_code == 201, uploaded.text
    response = client.put(
        "/admin/models/affine/deployment",
        headers=ADMIN,
        json={"stable": 2, "canary": {"version": 3, "weight": 10}},
    )
    assert response.status_code == 409
    assert "takes other inputs" in response.json()["error"]


def test_upload_registers_like_the_cli(client: Client, artifacts: Path, home: Path) -> None:
    files = {
        "model": ("model.onnx", (artifacts / "affine.onnx").read_bytes()),
        "reference": ("train.parquet", (artifacts / "affine.parquet").read_bytes()),
    }
    data = {
        "target": "label",
        "description": "uploaded",
        "owner": "risk",
        "tags": "team=risk,stage=canary",
        "metrics": "auc=0.9",
    }
    response = client.post("/admin/models/affine/versions", headers=ADMIN, files=files, data=data)
    assert response.status_code == 201, response.text
    manifest = response.json()
    assert (manifest["version"], manifest["created_by"], manifest["owner"]) == (3, "alice", "risk")
    assert manifest["tags"] == {"team": "risk", "stage": "canary"}
    assert manifest["metrics"] == {"auc": 0.9}
    assert (home / "models" / "affine" / "3" / "manifest.json").is_file()
    last = client.get("/admin/audit?model=affine", headers=READ).json()["entries"][-1]
    assert (last["action"], last["after"]["version"]) == ("model.register", 3)

    bad = client.post(
        "/admin/models/affine/versions",
        headers=ADMIN,
        files={**files, "reference": ("x.txt", b"a,b")},
    )
    assert bad.status_code == 400
    assert ".csv or .parquet" in bad.json()["error"]
    garbage = client.post(
        "/admin/models/affine/versions",
        headers=ADMIN,
        files={**files, "model": ("m.onnx", b"garbage")},
    )
    assert garbage.status_code == 400
    assert "cannot load the model" in garbage.json()["error"]
    traversal = client.post("/admin/models/..evil/versions", headers=ADMIN, files=files)
    assert traversal.status_code == 400


def test_status_reports_versions_deployments_and_backend(client: Client) -> None:
    status = client.get("/admin/status", headers=READ).json()
    assert status["state_backend"] == {"kind": "embedded", "healthy": True, "error": None}
    assert {(v["model"], v["version"]) for v in status["loaded"]} >= {("affine", 2)}
    assert status["deployments"]["affine"]["stable"] == 2


def test_shadows_get_copies_and_their_agreement_is_recorded(client: Client) -> None:
    body = {"stable": 2, "shadows": [{"version": 1, "percent": 100}]}
    assert (
        client.put("/admin/models/affine/deployment", headers=ADMIN, json=body).status_code == 200
    )
    for key in range(20):
        response = client.post(
            "/v2/models/affine/infer", json=ROWS, headers={"x-routing-key": str(key)}
        )
        assert response.json()["model_version"] == "2"
    for _ in range(100):
        agreement = client.get("/admin/status", headers=READ).json()["shadows"]["agreement"]
        if agreement and agreement[0]["comparisons"] == 20:
            break
        client.get("/v2/health/ready")  # let the loop run the shadow worker
    (shadow,) = agreement
    assert (shadow["model"], shadow["version"], shadow["comparisons"]) == ("affine", 1, 20)
    # v1 adds 1 where v2 adds 2: the 4 values of y differ by 1, the sum of x not at all
    assert shadow["values"] == 20 * 5
    assert shadow["abs_diff_sum"] == pytest.approx(20 * 4 * 1.0)
