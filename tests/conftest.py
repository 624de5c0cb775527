"""Shared fixtures: real ONNX models in a real registry, the real app, a real server."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from litestar.testing import TestClient

from gateway.app import create_app
from gateway.demo import train_demo_model
from gateway.settings import Settings
from registry import ModelRegistry
from tests import models
from tests.object_store import BUCKET, S3Server
from tests.object_store import CREDENTIALS as S3_CREDENTIALS

# The gateways tests start serve REST only, unless a test gives them a gRPC port of their own
# (tests/grpc/): several at once must not contend for the default 8001.
os.environ.setdefault("DRIFTGATE_GRPC_PORT", "0")


@pytest.fixture(scope="session")
def artifacts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Model files and reference data, built once per test session."""
    root = tmp_path_factory.mktemp("artifacts")
    models.affine_model(root / "affine.onnx")
    models.affine_model(root / "affine_v2.onnx", offset=2.0)
    models.affine_reference(root / "affine.parquet")
    models.affine_reference(root / "affine.csv")
    models.identity_model(root / "identity.onnx")
    models.identity_reference(root / "identity.parquet")
    models.lookup_model(root / "lookup.onnx")
    models.passthrough_model(root / "passthrough.onnx")
    models.lookup_reference(root / "lookup.csv")
    train_demo_model(root / "demo")
    return root


@pytest.fixture
def home(tmp_path: Path, artifacts: Path) -> Path:
    """A data directory whose registry holds affine (versions 1 and 2), identity and lookup."""
    return register_models(tmp_path, artifacts)


def register_models(home: Path, artifacts: Path) -> Path:
    """Register affine (versions 1 and 2), identity and lookup under `home`; returns it."""
    registry = ModelRegistry(home / "models")
    registry.register(
        "affine",
        artifacts / "affine.onnx",
        artifacts / "affine.parquet",
        target="label",
        owner="tests",
    )
    registry.register(
        "affine",
        artifacts / "affine_v2.onnx",
        artifacts / "affine.parquet",
        target="label",
        owner="tests",
    )
    registry.register("identity", artifacts / "identity.onnx", artifacts / "identity.parquet")
    registry.register("lookup", artifacts / "lookup.onnx", artifacts / "lookup.csv")
    return home


ADMIN_TOKEN = "s3cret-admin"
READ_TOKEN = "s3cret-read"
FEEDBACK_TOKEN = "s3cret-labels"
TOKENS = f"alice:admin:{ADMIN_TOKEN},grafana:read:{READ_TOKEN},labeller:feedback:{FEEDBACK_TOKEN}"
LABELLER = {"Authorization": f"Bearer {FEEDBACK_TOKEN}"}  # headers that may send labels


@pytest.fixture
def settings(home: Path) -> Settings:
    """Gateway settings over the test registry, with a small body limit to test it."""
    return Settings(home=home, max_request_bytes=1 << 20, tokens=TOKENS)


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:  # type: ignore[type-arg]
    """The real app through Litestar's test client (startup and shutdown included)."""
    with TestClient(app=create_app(settings)) as test_client:
        yield test_client


def free_port() -> int:
    """A TCP port on loopback that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextlib.contextmanager
def gateway_process(home: Path, **environ: str) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """`driftgate serve` in its own process on a free loopback port; yields its base URL and
    the process (which a test may kill)."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "gateway", "serve", "--home", str(home), "--port", str(port)],
        env={**os.environ, "DRIFTGATE_LOG_LEVEL": "warning", "DRIFTGATE_TOKENS": TOKENS, **environ},
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(url, process)
        yield url, process
    finally:
        stop_process(process)


def stop_process(process: subprocess.Popen[bytes]) -> None:
    """Terminate a server a test started, and kill it if it does not stop in 10 s."""
    if process.poll() is None:
        process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)


@contextlib.contextmanager
def running_gateway(home: Path, **environ: str) -> Iterator[str]:
    """`driftgate serve` in its own process on a free loopback port; yields its base URL."""
    with gateway_process(home, **environ) as (url, _):
        yield url


@pytest.fixture
def live_server(home: Path) -> Iterator[str]:
    """One gateway process over the test registry, embedded state."""
    with running_gateway(home) as url:
        yield url


class RedisServer:
    """A private redis-server on a free loopback port, which tests may stop and restart."""

    def __init__(self, directory: Path) -> None:
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self._directory = directory
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self._process = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self._directory),
            ],
            stdout=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as sock,
            ):
                sock.sendall(b"PING\r\n")
                if sock.recv(16).startswith(b"+PONG"):
                    return
            time.sleep(0.05)
        raise TimeoutError("redis-server did not start")

    def stop(self) -> None:
        if self._process is not None:
            self._process.terminate()
            self._process.wait(timeout=10)
            self._process = None


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A fresh, empty Redis for one test (no data survives a restart: no persistence)."""
    server = RedisServer(tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def wait_ready(url: str, process: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    """Block until the server at `url` answers ready, failing fast if it exits."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}")
        try:
            if httpx.get(f"{url}/v2/health/ready", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise TimeoutError(f"{url} not ready after {timeout} s")


@pytest.fixture
def s3_server(monkeypatch: pytest.MonkeyPatch) -> Iterator[S3Server]:
    """A fresh S3 server with an empty bucket `models`; the AWS variables name its test
    credentials for this test's process and the gateways it starts."""
    for name, value in S3_CREDENTIALS.items():
        monkeypatch.setenv(name, value)
    server = S3Server(free_port())
    server.start()
    try:
        server.client().create_bucket(Bucket=BUCKET)
        yield server
    finally:
        server.stop()
