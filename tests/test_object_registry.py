"""Gateways and the CLI over a registry in an S3 bucket (a real S3 API server): no shared
disk between them, artifacts verified before they are served, and a store outage that
stops new loads with a clear 503 while the loaded versions keep serving."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from litestar.testing import TestClient

from gateway.app import create_app
from gateway.settings import Settings
from tests.conftest import ADMIN_TOKEN, READ_TOKEN, TOKENS
from tests.object_store import BUCKET, S3Server
from tests.oip import json_input

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
READ = {"Authorization": f"Bearer {READ_TOKEN}"}
URL = f"s3://{BUCKET}/prod"
Client = TestClient  # type: ignore[type-arg]


@pytest.fixture
def gateways(s3_server: S3Server, tmp_path: Path) -> Iterator[tuple[Client, Client]]:
    """Two gateways with data directories of their own and one bucket."""

    def settings(replica: str) -> Settings:
        return Settings(
            home=tmp_path / replica,
            registry_url=URL,
            registry_endpoint=s3_server.endpoint,
            tokens=TOKENS,
        )

    with (
        TestClient(app=create_app(settings("a"))) as a,
        TestClient(app=create_app(settings("b"))) as b,
    ):
        yield a, b


def test_the_cli_registers_and_lists_in_the_bucket(
    s3_server: S3Server, tmp_path: Path, artifacts: Path
) -> None:
    environ = {"DRIFTGATE_REGISTRY_URL": URL, "DRIFTGATE_REGISTRY_ENDPOINT": s3_server.endpoint}
    registered = _driftgate(
        "models",
        "register",
        "churn",
        str(artifacts / "affine.onnx"),
        "--reference",
        str(artifacts / "affine.csv"),
        "--target",
        "label",
        home=tmp_path,
        environ=environ,
    )
    assert registered.returncode == 0, registered.stderr
    assert registered.stdout.startswith("registered churn version 1 (sha256 ")
    listed = _driftgate("models", "list", home=tmp_path, environ=environ)
    assert "churn" in listed.stdout
    keys = {item["Key"] for item in s3_server.client().list_objects_v2(Bucket=BUCKET)["Contents"]}
    assert keys == {"prod/churn/1/model.onnx", "prod/churn/1/manifest.json"}
    assert not (tmp_path / "models").exists()


def test_a_version_uploaded_to_one_gateway_is_served_by_another(
    gateways: tuple[Client, Client], artifacts: Path, s3_server: S3Server
) -> None:
    a, b = gateways
    for model in ("affine.onnx", "affine_v2.onnx"):
        assert _upload(a, artifacts, model).status_code == 201

    served = b.post("/v2/models/affine/versions/2/infer", json=_request())
    assert served.status_code == 200, served.text
    assert served.json()["model_version"] == "2"
    assert b.post("/v2/models/affine/infer", json=_request()).json()["model_version"] == "2"

    s3_server.client().put_object(
        Bucket=BUCKET, Key="prod/affine/1/model.onnx", Body=b"\x08\x07tampered"
    )
    refused = b.post("/v2/models/affine/versions/1/infer", json=_request())
    assert refused.status_code == 503
    assert "affine version 1: model.onnx has sha256" in refused.json()["error"]
    assert b.post("/v2/models/affine/infer", json=_request()).status_code == 200
    status = b.get("/admin/status", headers=READ).json()["registry"]
    assert status == {"location": URL, "reachable": True, "error": None}


def test_an_unreachable_store_stops_new_loads_only(
    gateways: tuple[Client, Client], artifacts: Path, s3_server: S3Server
) -> None:
    a, _ = gateways
    for model in ("affine.onnx", "affine_v2.onnx"):
        assert _upload(a, artifacts, model).status_code == 201
    assert a.post("/v2/models/affine/infer", json=_request()).status_code == 200
    s3_server.stop()

    for _ in range(20):
        assert a.post("/v2/models/affine/infer", json=_request()).status_code == 200
    unloaded = a.post("/v2/models/affine/versions/1/infer", json=_request())
    assert unloaded.status_code == 503
    assert f"the model store {URL} cannot be used" in unloaded.json()["error"]
    upload = _upload(a, artifacts, "affine.onnx")
    assert upload.status_code == 503
    assert "cannot be used" in upload.json()["error"]
    registry = a.get("/admin/status", headers=READ).json()["registry"]
    assert registry["reachable"] is False
    assert f"the model store {URL} cannot be used" in registry["error"]


def _upload(client: Client, artifacts: Path, model: str) -> object:
    files = {
        "model": ("model.onnx", (artifacts / model).read_bytes()),
        "reference": ("train.parquet", (artifacts / "affine.parquet").read_bytes()),
    }
    return client.post(
        "/admin/models/affine/versions", headers=ADMIN, files=files, data={"target": "label"}
    )


def _request() -> dict[str, object]:
    rows = np.arange(8, dtype=np.float32).reshape(2, 4)
    return {"inputs": [json_input("x", rows, "FP32")]}


def _driftgate(*args: str, home: Path, environ: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gateway", *args, "--home", str(home)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, **environ},
    )
