"""Operating the gRPC service: `--workers 2` both serving it, TLS for REST and gRPC from the
same certificate settings, and server reflection when it is turned on."""

from __future__ import annotations

import ssl
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import httpx
import numpy as np
import pytest
import tritonclient.grpc as triton
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)
from tritonclient.grpc import service_pb2_grpc

from gateway.settings import load_settings
from tests.grpc.conftest import Gateway, grpc_gateway, self_signed
from tests.grpc.messages import typed_request

LISTEN, ESTABLISHED = "0A", "01"  # socket states in /proc/net/tcp


@pytest.fixture(scope="module")
def gateway(module_home: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    """Two workers over TLS, with reflection on."""
    certificate = self_signed(tmp_path_factory.mktemp("tls"))
    with grpc_gateway(
        module_home, workers=2, tls=certificate, DRIFTGATE_GRPC_REFLECTION="true"
    ) as running:
        port = int(running.target.rpartition(":")[2])
        deadline = time.monotonic() + 60
        while len(_sockets(running.process.pid, port, LISTEN)) < 2:  # both workers started
            assert time.monotonic() < deadline, "the workers did not both bind the gRPC port"
            time.sleep(0.2)
        yield running


@pytest.mark.e2e
def test_tls_for_rest_and_grpc(gateway: Gateway, module_home: Path) -> None:
    assert gateway.certificate is not None
    cert_file = module_home / "cert.pem"
    cert_file.write_bytes(gateway.certificate)
    with triton.InferenceServerClient(
        gateway.target, ssl=True, root_certificates=str(cert_file)
    ) as client:
        assert client.is_server_ready()
        tensor = triton.InferInput("x", [1, 4], "FP32")
        tensor.set_data_from_numpy(np.array([[1, 2, 3, 4]], np.float32))
        assert client.infer("affine", [tensor]).as_numpy("total").tolist() == [10.0]
    trusted = ssl.create_default_context(cafile=cert_file)
    served = httpx.get(f"{gateway.url}/v2/health/ready", verify=trusted)
    assert served.status_code == 200
    # Plain text is not served on either port.
    request = typed_request("affine", [("x", np.ones((1, 4), np.float32), "FP32")])
    with grpc.insecure_channel(gateway.target) as plain, pytest.raises(grpc.RpcError) as refused:
        service_pb2_grpc.GRPCInferenceServiceStub(plain).ModelInfer(request, timeout=5)
    assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
    with pytest.raises(httpx.TransportError):
        httpx.get(gateway.url.replace("https://", "http://") + "/v2/health/ready")


@pytest.mark.e2e
def test_both_workers_serve_grpc(gateway: Gateway) -> None:
    port = int(gateway.target.rpartition(":")[2])
    request = typed_request("affine", [("x", np.ones((1, 4), np.float32), "FP32")])
    channels = [gateway.channel() for _ in range(24)]  # each its own connection
    try:
        for channel in channels:
            answer = service_pb2_grpc.GRPCInferenceServiceStub(channel).ModelInfer(
                request, timeout=30
            )
            assert answer.model_name == "affine"
        # The kernel spreads connections over both workers' sockets (SO_REUSEPORT): all 24
        # on one worker would happen once in eight million runs.
        workers = _sockets(gateway.process.pid, port, ESTABLISHED)
        assert len(workers) == 2, workers
    finally:
        for channel in channels:
            channel.close()


@pytest.mark.e2e
def test_reflection_when_turned_on(gateway: Gateway) -> None:
    with gateway.channel() as channel:
        database = ProtoReflectionDescriptorDatabase(channel)
        services = set(database.get_services())
        assert {"inference.GRPCInferenceService", "grpc.health.v1.Health"} <= services
        described = database.FindFileContainingSymbol("inference.ModelInferRequest")
        assert "ModelInferRequest" in [message.name for message in described.message_type]


def _sockets(parent: int, port: int, state: str) -> dict[int, int]:
    """For each child process of `parent`, how many of its TCP sockets on loopback `port`
    are in `state` (from /proc)."""
    inodes = set()
    for table in ("tcp", "tcp6"):  # gRPC binds 127.0.0.1 as an IPv4-mapped IPv6 address
        for line in Path(f"/proc/net/{table}").read_text().splitlines()[1:]:
            fields = line.split()
            if fields[1].endswith(f":{port:04X}") and fields[3] == state:
                inodes.add(fields[9])
    found: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
            if int(text[text.rindex(")") + 2 :].split()[1]) != parent:
                continue
            links = [fd.readlink().name for fd in (stat.parent / "fd").iterdir()]
        except (OSError, ValueError):
            continue  # gone meanwhile
        count = sum(link.startswith("socket:[") and link[8:-1] in inodes for link in links)
        if count:
            found[int(stat.parent.name)] = count
    return found


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"DRIFTGATE_TLS_CERT_FILE": "cert.pem"}, "TLS needs both tls_cert_file and tls_key_file"),
        ({"DRIFTGATE_TLS_KEY_FILE": "key.pem"}, "TLS needs both tls_cert_file and tls_key_file"),
        ({"DRIFTGATE_GRPC_PORT": "8000"}, "port and grpc_port are both 8000"),
    ],
    ids=["a certificate without its key", "a key without its certificate", "one port for both"],
)
def test_settings_that_cannot_serve_are_refused(environ: dict[str, str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        load_settings(environ)


def test_grpc_defaults() -> None:
    settings = load_settings({})
    assert (settings.grpc_port, settings.grpc_reflection, settings.tls_on) == (8001, False, False)
