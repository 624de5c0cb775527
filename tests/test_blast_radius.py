"""One damaged model fails alone: the gateway starts, the damaged version answers 503 with
the reason (and is not ready, counted and logged), and every other model serves."""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from litestar.testing import TestClient
from prometheus_client import CollectorRegistry

from gateway.app import create_app
from gateway.cli import main
from gateway.components import runtime_builder
from gateway.errors import ServiceUnavailableError
from gateway.repository import ModelRepository
from gateway.settings import Settings
from monitor.metrics import GatewayMetrics
from registry import ModelRegistry
from registry.deployment import Deployment
from registry.state import Change
from registry.state_embedded import EmbeddedState
from tests.conftest import ADMIN_TOKEN, running_gateway

pytestmark = pytest.mark.faults
AFFINE = {"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]}]}
LOOKUP = {"inputs": [{"name": "index", "shape": [1], "datatype": "INT64", "data": [1]}]}


def _writable(path: Path) -> Path:
    """Registered files and directories are read-only; damage needs them writable."""
    path.parent.chmod(0o755)
    if path.exists():
        path.chmod(0o644)
    return path


def _tamper(home: Path) -> None:
    artifact = _writable(home / "models/lookup/1/model.onnx")
    artifact.write_bytes(artifact.read_bytes() + b"\x00")


def _truncate(home: Path) -> None:
    artifact = _writable(home / "models/lookup/1/model.onnx")
    artifact.write_bytes(artifact.read_bytes()[:20])


def _delete_artifact(home: Path) -> None:
    _writable(home / "models/lookup/1/model.onnx").unlink()


def _garbage_manifest(home: Path) -> None:
    _writable(home / "models/lookup/1/manifest.json").write_bytes(b"\x00\xff not json")


def _delete_manifest(home: Path) -> None:
    _writable(home / "models/lookup/1/manifest.json").unlink()


def _deploy_missing_version(home: Path) -> None:
    deployment = Deployment(model="lookup", stable=7, revision=1)
    change = Change(
        model="lookup",
        action="deployment.set",
        actor="alice",
        expected_revision=0,
        deployment=deployment,
        after=deployment,
    )
    asyncio.run(EmbeddedState(home / "state").commit(change))


DAMAGE: dict[str, tuple[Callable[[Path], None], str]] = {
    "tampered artifact": (_tamper, "the artifact was modified and is refused"),
    "truncated artifact": (_truncate, "(20 bytes), but the manifest records"),
    "deleted artifact": (_delete_artifact, "lookup version 1: model.onnx is missing"),
    "garbage manifest": (_garbage_manifest, "lookup version 1: manifest.json is damaged"),
    "missing manifest": (_delete_manifest, "lookup version 1: manifest.json is missing"),
    "deployment naming a missing version": (
        _deploy_missing_version,
        "no version 7, but its deployment routes traffic to it",
    ),
}


def _app(settings: Settings, caplog: pytest.LogCaptureFixture) -> TestClient:  # type: ignore[type-arg]
    """The real app, its log captured: its logging configuration replaces the root
    logger's handlers, caplog's among them."""
    app = create_app(settings)
    logging.getLogger().addHandler(caplog.handler)
    return TestClient(app=app)


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_a_damaged_version_fails_alone(
    home: Path, settings: Settings, damage: str, caplog: pytest.LogCaptureFixture
) -> None:
    apply, reason = DAMAGE[damage]
    apply(home)
    version = "7" if damage.startswith("deployment") else "1"
    with _app(settings, caplog) as client:
        response = client.post("/v2/models/lookup/infer", json=LOOKUP)
        assert response.status_code == 503, response.text
        assert reason in response.json()["error"]
        for path in ["/v2/models/lookup/ready", f"/v2/models/lookup/versions/{version}/ready"]:
            ready = client.get(path)
            assert ready.status_code == 503
            assert ready.json()["ready"] is False
            assert reason in ready.json()["error"]
        assert client.post("/v2/models/affine/infer", json=AFFINE).status_code == 200
        assert client.post("/v2/models/affine/versions/1/infer", json=AFFINE).status_code == 200
        assert client.get("/v2/models/identity/ready").json() == {"name": "identity", "ready": True}
        metrics = client.get("/metrics").text
        assert (
            f'driftgate_model_version_broken{{model="lookup",version="{version}"}} 1.0' in metrics
        )
        assert 'driftgate_model_version_broken{model="affine"' not in metrics
    logged = [r.getMessage() for r in caplog.records if r.name == "gateway.repository"]
    assert any(f"cannot serve lookup version {version}" in line for line in logged), logged


def test_models_list_shows_a_damaged_version(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _garbage_manifest(home)
    assert main(["models", "list", "--home", str(home)]) == 0
    out, err = capsys.readouterr()
    assert [line.split()[:3] for line in out.splitlines()[1:]] == [
        ["affine", "2", "2"],
        ["identity", "1", "1"],
        ["lookup", "1", "1"],
    ]
    assert "damaged" in out.splitlines()[-1]
    assert "lookup version 1: manifest.json is damaged" in err


def test_a_stray_directory_is_skipped(
    home: Path, settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    stray = home / "models" / "wine backup"
    shutil.copytree(home / "models" / "lookup", stray)
    (home / "models" / "README.txt").write_text("not a model")
    with _app(settings, caplog) as client:
        for model, body in [("affine", AFFINE), ("lookup", LOOKUP)]:
            assert client.post(f"/v2/models/{model}/infer", json=body).status_code == 200
    assert any("wine backup" in r.getMessage() for r in caplog.records)


def test_a_restored_version_serves_again(home: Path, settings: Settings) -> None:
    registry = ModelRegistry(home / "models")
    with ThreadPoolExecutor(1) as executor:
        metrics = GatewayMetrics(CollectorRegistry())
        repository = ModelRepository(
            registry, runtime_builder(settings, executor, metrics), retry_seconds=0.0
        )
        artifact = home / "models/lookup/1/model.onnx"
        original = artifact.read_bytes()
        _tamper(home)
        with pytest.raises(ServiceUnavailableError, match="was modified"):
            asyncio.run(repository.get("lookup", 1))
        assert [(f.model, f.version) for f in repository.failures()] == [("lookup", 1)]
        artifact.write_bytes(original)
        assert asyncio.run(repository.get("lookup", 1)).manifest.version == 1
        assert list(repository.failures()) == []


def test_an_operator_can_route_around_a_damaged_version(home: Path, settings: Settings) -> None:
    _writable(home / "models/affine/2/manifest.json").write_bytes(b"{}")
    admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    with TestClient(app=create_app(settings)) as client:
        assert client.post("/v2/models/affine/infer", json=AFFINE).status_code == 503
        refused = client.put(
            "/admin/models/affine/deployment",
            json={"stable": 1, "canary": {"version": 2, "weight": 10}},
            headers=admin,
        )
        assert refused.status_code == 503
        assert "affine version 2: manifest.json is damaged" in refused.json()["error"]
        moved = client.put("/admin/models/affine/deployment", json={"stable": 1}, headers=admin)
        assert moved.status_code == 200, moved.text
        assert client.post("/v2/models/affine/infer", json=AFFINE).status_code == 200
        assert "driftgate_model_version_broken{" not in client.get("/metrics").text


def test_damaged_deployments_name_the_file_and_what_to_do(home: Path) -> None:
    state = home / "state"
    state.mkdir()
    (state / "deployments.json").write_bytes(b"\x00garbage")
    done = subprocess.run(
        [sys.executable, "-m", "gateway", "serve", "--home", str(home), "--port", "1"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "DRIFTGATE_LOG_LEVEL": "warning"},
        check=False,
    )
    assert done.returncode != 0
    assert "Traceback" not in done.stderr
    assert f"{state / 'deployments.json'} is damaged" in done.stderr
    assert "restore it from a backup, or move it aside" in done.stderr


@pytest.mark.e2e
def test_a_real_gateway_starts_around_damaged_models(home: Path) -> None:
    _tamper(home)
    _writable(home / "models/affine/1/manifest.json").write_bytes(b"[")
    shutil.copytree(home / "models" / "identity", home / "models" / "wine backup")
    with running_gateway(home) as url:
        assert httpx.post(f"{url}/v2/models/lookup/infer", json=LOOKUP).status_code == 503
        assert httpx.get(f"{url}/v2/models/lookup/ready").json()["ready"] is False
        explicit = httpx.post(f"{url}/v2/models/affine/versions/1/infer", json=AFFINE)
        assert explicit.status_code == 503
        assert "manifest.json is damaged" in explicit.json()["error"]
        assert httpx.post(f"{url}/v2/models/affine/infer", json=AFFINE).status_code == 200
        metrics = httpx.get(f"{url}/metrics").text
        assert 'driftgate_model_version_broken{model="lookup",version="1"} 1.0' in metrics
        assert 'driftgate_model_version_broken{model="affine",version="1"} 1.0' in metrics
