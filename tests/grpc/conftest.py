"""A real gateway process serving REST and gRPC on loopback, one per test module."""

from __future__ import annotations

import contextlib
import datetime
import ipaddress
import os
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from grpc_health.v1 import health_pb2, health_pb2_grpc

from registry import ModelRegistry
from tests import models
from tests.conftest import TOKENS, free_port, register_models, stop_process

TYPED = [datatype for datatype in models.ALL_TYPES if datatype != "FP16"]
"""The datatypes that have typed contents (FP16 travels raw only)."""


@dataclass(frozen=True)
class Gateway:
    """A running gateway: its REST base URL, its gRPC target, its process."""

    url: str
    target: str
    process: subprocess.Popen[bytes]
    certificate: bytes | None = None
    """The PEM certificate it serves, when over TLS."""

    def channel(self) -> grpc.Channel:
        """A new gRPC channel to it (over TLS when it serves TLS)."""
        if self.certificate is None:
            return grpc.insecure_channel(self.target)
        credentials = grpc.ssl_channel_credentials(root_certificates=self.certificate)
        return grpc.secure_channel(self.target, credentials)


@dataclass(frozen=True)
class Certificate:
    """A self-signed certificate for 127.0.0.1 and localhost, and its key, as PEM files."""

    cert_file: Path
    key_file: Path


def self_signed(directory: Path) -> Certificate:
    """Make a self-signed certificate valid for a day for the loopback names."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "driftgate test")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = directory / "cert.pem", directory / "key.pem"
    cert_file.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return Certificate(cert_file, key_file)


@contextlib.contextmanager
def grpc_gateway(
    home: Path, *, workers: int = 1, tls: Certificate | None = None, **environ: str
) -> Iterator[Gateway]:
    """`driftgate serve` with gRPC on a free port (and `environ`'s settings); yields it once
    both protocols answer ready."""
    port, grpc_port = free_port(), free_port()
    settings = {
        "DRIFTGATE_LOG_LEVEL": "warning",
        "DRIFTGATE_TOKENS": TOKENS,
        "DRIFTGATE_GRPC_PORT": str(grpc_port),
        **environ,
    }
    if tls is not None:
        settings["DRIFTGATE_TLS_CERT_FILE"] = str(tls.cert_file)
        settings["DRIFTGATE_TLS_KEY_FILE"] = str(tls.key_file)
    command = [sys.executable, "-m", "gateway", "serve", "--home", str(home), "--port", str(port)]
    process = subprocess.Popen([*command, "--workers", str(workers)], env=os.environ | settings)
    gateway = Gateway(
        url=f"{'https' if tls else 'http'}://127.0.0.1:{port}",
        target=f"127.0.0.1:{grpc_port}",
        process=process,
        certificate=tls.cert_file.read_bytes() if tls else None,
    )
    try:
        _wait_ready(gateway, tls)
        yield gateway
    finally:
        stop_process(process)


def _wait_ready(gateway: Gateway, tls: Certificate | None, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    verify: ssl.SSLContext | bool = (
        ssl.create_default_context(cafile=tls.cert_file) if tls is not None else True
    )
    while time.monotonic() < deadline:
        if gateway.process.poll() is not None:
            raise RuntimeError(f"gateway exited with {gateway.process.returncode}")
        with contextlib.suppress(httpx.TransportError, grpc.RpcError):
            ready = httpx.get(f"{gateway.url}/v2/health/ready", timeout=1, verify=verify)
            if ready.status_code == 200 and serving(gateway):
                return
        time.sleep(0.1)
    raise TimeoutError(f"gateway not ready after {timeout} s")


def serving(gateway: Gateway) -> bool:
    """Whether the gateway's grpc.health.v1 service says SERVING."""
    with gateway.channel() as channel:
        health = health_pb2_grpc.HealthStub(channel)
        answer = health.Check(health_pb2.HealthCheckRequest(service=""), timeout=2)
    return bool(answer.status == health_pb2.HealthCheckResponse.SERVING)


@pytest.fixture(scope="module")
def module_home(tmp_path_factory: pytest.TempPathFactory, artifacts: Path) -> Path:
    """A data directory of this module's own, with the test models registered, and `typed`:
    an identity model over every datatype with typed contents."""
    home = register_models(tmp_path_factory.mktemp("home"), artifacts)
    typed = home / "typed"
    typed.mkdir()
    models.identity_model(typed / "model.onnx", TYPED)
    models.identity_reference(typed / "reference.parquet", datatypes=TYPED)
    ModelRegistry(home / "models").register(
        "typed", typed / "model.onnx", typed / "reference.parquet"
    )
    return home
