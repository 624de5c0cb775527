"""The gateway's secrets stay where the operator put them: not copied into the environment
of its worker processes, nor passed to the commands it runs, nor written in its logs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from litestar.testing import TestClient

from gateway.app import create_app
from gateway.settings import Settings, load_settings, settings_environ
from registry import ModelRegistry
from tests.conftest import free_port, stop_process, wait_ready
from tests.test_retraining import send

HASH_KEY = "0123456789abcdef-hash-key"
SECRETS = Settings(
    tokens="ops:admin:file-secret-token",
    export_sensitive="hash",
    export_hash_key=HASH_KEY,
    redis_url="redis://:redis-password@127.0.0.1:1/0",
    retraining_webhook="https://hooks.example/x?token=webhook-token",
)


def test_worker_environment_carries_no_secret() -> None:
    environ = settings_environ(SECRETS)
    values = "\n".join(environ.values())
    for secret in ("file-secret-token", HASH_KEY, "redis-password", "webhook-token"):
        assert secret not in values
    assert environ["DRIFTGATE_EXPORT_SENSITIVE"] == "hash"
    assert load_settings(settings_environ(SECRETS, secrets=True)) == SECRETS


@pytest.mark.e2e
def test_workers_read_tokens_from_the_config_file_not_their_environment(tmp_path: Path) -> None:
    config = tmp_path / "driftgate.toml"
    config.write_text('tokens = "ops:admin:file-secret-token"\n')
    port = free_port()
    environ = {key: value for key, value in os.environ.items() if not key.startswith("DRIFTGATE_")}
    environ["DRIFTGATE_GRPC_PORT"] = "0"  # REST only, as every test gateway (tests/conftest.py)
    process = subprocess.Popen(
        [sys.executable, "-m", "gateway", "serve", "--workers", "2", "--port", str(port)],
        env={
            **environ,
            "DRIFTGATE_CONFIG": str(config),
            "DRIFTGATE_HOME": str(tmp_path / "home"),
            "DRIFTGATE_LOG_LEVEL": "warning",
        },
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(url, process)
        status = httpx.get(
            f"{url}/admin/status", headers={"Authorization": "Bearer file-secret-token"}
        )
        assert status.status_code == 200  # the worker has the token, from the file
        worker = status.json()["controller"]["pid"]
        assert worker != process.pid
        worker_environ = Path(f"/proc/{worker}/environ").read_bytes()
        assert b"DRIFTGATE_PORT" in worker_environ  # it was handed its settings...
        assert b"file-secret-token" not in worker_environ  # ...but not the secret
    finally:
        process.terminate()
        process.wait(timeout=20)


def test_retraining_command_never_sees_the_gateways_secrets(
    tmp_path: Path, artifacts: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DRIFTGATE_TOKENS", "ops:admin:env-secret-token")
    monkeypatch.setenv("DRIFTGATE_EXPORT_HASH_KEY", HASH_KEY)
    monkeypatch.setenv("DRIFTGATE_URL", "http://gateway:8000")  # a client setting: kept
    ModelRegistry(tmp_path / "models").register(
        "affine", artifacts / "affine.onnx", artifacts / "affine.parquet", target="label"
    )
    seen = tmp_path / "environ.json"
    dump = f"import json, os; open({str(seen)!r}, 'w').write(json.dumps(dict(os.environ)))"
    settings = Settings(
        home=tmp_path,
        sample_rate=1.0,
        drift_pane_seconds=1.0,
        drift_interval_seconds=0.2,
        retraining_command=f"{sys.executable} -c {json.dumps(dump)}",
    )
    rows = np.random.default_rng(5).normal(size=(300, 4)).astype(np.float32)
    rows[:, 0] += 2.0
    client: TestClient[Any]
    with TestClient(app=create_app(settings)) as client:
        send(client, rows, "r")
        deadline = time.monotonic() + 30
        while not seen.exists():
            assert time.monotonic() < deadline, "the retraining command did not run"
            send(client, rows[:20], "more")
            time.sleep(0.2)
        time.sleep(0.2)
    command_environ = json.loads(seen.read_text())
    assert "DRIFTGATE_TOKENS" not in command_environ
    assert "DRIFTGATE_EXPORT_HASH_KEY" not in command_environ
    assert command_environ["DRIFTGATE_URL"] == "http://gateway:8000"


@pytest.mark.e2e
@pytest.mark.parametrize(("log_format", "workers"), [("text", 1), ("json", 2)])
def test_no_log_line_holds_a_secret(home: Path, log_format: str, workers: int) -> None:
    """Every secret configured, Redis failing (its URL holds a password), debug logs, the
    access log and tracing on; good and bad tokens, admin calls, good and bad infer calls:
    nothing the gateway or its workers write holds a secret, and in `json` every line is
    one JSON object."""
    port = free_port()
    environ = {key: value for key, value in os.environ.items() if not key.startswith("DRIFTGATE_")}
    environ["DRIFTGATE_GRPC_PORT"] = "0"  # REST only, as every test gateway (tests/conftest.py)
    secrets = settings_environ(SECRETS, secrets=True)
    output = home / "output.log"
    with output.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "gateway", "serve", "--home", str(home), "--port", str(port)],
            env={
                **environ,
                **{name: secrets[name] for name in _SECRET_SETTINGS},
                "DRIFTGATE_EXPORT_SENSITIVE": "hash",
                "DRIFTGATE_WORKERS": str(workers),
                "DRIFTGATE_LOG_LEVEL": "debug",
                "DRIFTGATE_LOG_FORMAT": log_format,
                "DRIFTGATE_ACCESS_LOG": "true",
                "DRIFTGATE_TRACING": "true",
                "OTEL_TRACES_EXPORTER": "none",
            },
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        url = f"http://127.0.0.1:{port}"
        try:
            wait_ready(url, process, timeout=60)
            admin = {"Authorization": "Bearer file-secret-token"}
            wrong = {"Authorization": "Bearer file-secret-tokeN"}
            infer = f"{url}/v2/models/affine/infer"
            body = {"id": "r1", "inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32",
                                            "data": [1, 2, 3, 4]}]}  # fmt: skip
            assert httpx.post(infer, json=body).status_code == 200
            assert httpx.post(infer, content=b"{").status_code == 400
            assert httpx.get(f"{url}/admin/status", headers=admin).status_code == 200
            assert httpx.get(f"{url}/admin/status", headers=wrong).status_code == 401
            changed = httpx.put(
                f"{url}/admin/models/affine/deployment", json={"stable": 1}, headers=admin
            )
            assert changed.status_code == 503  # Redis is down: refused, and said so
        finally:
            stop_process(process)
    text = output.read_text()
    assert "Redis is unreachable" in text  # the failures were logged...
    assert "POST /v2/models/affine/infer 200" in text
    for secret in ("file-secret-token", HASH_KEY, "redis-password", "webhook-token"):
        assert secret not in text  # ...without their secrets
    if log_format == "json":
        lines = [json.loads(line) for line in text.splitlines() if line.strip()]
        assert {"time", "level", "logger", "message"} <= set.intersection(*map(set, lines))
        workers_started = {line["message"] for line in lines if line["logger"] == "uvicorn.error"}
        assert sum(m.startswith("Started server process") for m in workers_started) == workers


_SECRET_SETTINGS = ("DRIFTGATE_TOKENS", "DRIFTGATE_EXPORT_HASH_KEY", "DRIFTGATE_REDIS_URL",
                    "DRIFTGATE_RETRAINING_WEBHOOK")  # fmt: skip
