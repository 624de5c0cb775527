"""The gRPC server of one worker: the inference service, `grpc.health.v1`, and reflection
when asked for, started and stopped with the app on its event loop.

Every `--workers` worker binds the same `grpc_port` with SO_REUSEPORT (gRPC's default on
Linux), so the kernel spreads connections across workers as it does for any gRPC server
started more than once. Bounds follow the REST server's: messages up to
`max_request_bytes` (RESOURCE_EXHAUSTED beyond, before any of it is parsed), metadata up
to `max_header_bytes`, and `max_connections` calls at once per worker.
"""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path
from typing import Any

import grpc
from google.protobuf import descriptor_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1.health import aio as health_aio
from grpc_reflection.v1alpha import reflection, reflection_pb2

from gateway.dataplane import DataPlane
from gateway.grpc import protos
from gateway.grpc.servicer import InferenceServicer
from gateway.settings import Settings

logger = logging.getLogger(__name__)
STOP_GRACE_SECONDS = 5.0  # calls under way get this long to finish when the app stops
_SERVING = health_pb2.HealthCheckResponse.SERVING
_NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


class ReadinessHealth(health_aio.HealthServicer):
    """`grpc.health.v1.Health` answering as `/v2/health/ready` does, for the whole server
    (service "") and for the inference service: its status is read on every check."""

    def __init__(self, dataplane: DataPlane) -> None:
        super().__init__()
        self._dataplane = dataplane
        self._stopping = False

    async def Check(  # noqa: N802 (the gRPC method's name)
        self, request: health_pb2.HealthCheckRequest, context: Any
    ) -> health_pb2.HealthCheckResponse:
        """The current readiness of the server or the inference service."""
        ready = not self._stopping and self._dataplane.server_ready().ready
        for service in ("", protos.SERVICE):
            await self.set(service, _SERVING if ready else _NOT_SERVING)
        return await super().Check(request, context)

    async def stopping(self) -> None:
        """Answer NOT_SERVING from now on: the server is going away."""
        self._stopping = True
        await self.enter_graceful_shutdown()


class GrpcServer:
    """The Open Inference Protocol over gRPC on `settings.grpc_port`, over `dataplane`."""

    def __init__(self, dataplane: DataPlane, settings: Settings) -> None:
        self._dataplane = dataplane
        self._settings = settings
        self._server: grpc.aio.Server | None = None
        self._health: ReadinessHealth | None = None
        self.port = 0
        """The port bound, once started."""

    async def start(self) -> None:
        """Bind the port and serve (inside the app's running event loop)."""
        settings = self._settings
        server = grpc.aio.server(
            options=[
                ("grpc.max_receive_message_length", settings.max_request_bytes),
                ("grpc.max_metadata_size", settings.max_header_bytes),
                # Workers share the port; a lone process owns it, so that a second gateway
                # on the same port fails to start rather than silently taking half the calls.
                ("grpc.so_reuseport", int(settings.workers > 1)),
            ],
            maximum_concurrent_rpcs=settings.max_connections,
        )
        InferenceServicer(self._dataplane).add_to(server)
        self._health = ReadinessHealth(self._dataplane)
        health_pb2_grpc.add_HealthServicer_to_server(self._health, server)
        if settings.grpc_reflection:
            reflection.enable_server_reflection(
                [protos.SERVICE, "grpc.health.v1.Health", reflection.SERVICE_NAME],
                server,
                pool=_reflection_pool(),
            )
        address = _address(settings.host, settings.grpc_port)
        try:
            if settings.tls_on:
                key = Path(settings.tls_key_file).read_bytes()
                chain = Path(settings.tls_cert_file).read_bytes()
                credentials = grpc.ssl_server_credentials([(key, chain)])
                self.port = server.add_secure_port(address, credentials)
            else:
                self.port = server.add_insecure_port(address)
        except RuntimeError as exc:  # gRPC's word for a port it cannot bind
            raise OSError(
                f"cannot serve gRPC on {address} ({exc}); set grpc_port to a free port, or 0 "
                "to serve REST only"
            ) from exc
        await server.start()
        self._server = server
        logger.info(
            "serving the Open Inference Protocol over gRPC%s on %s",
            " (TLS)" if settings.tls_on else "",
            address,
        )

    async def stop(self) -> None:
        """Refuse new calls, let those under way finish (a few seconds at most), stop."""
        if self._health is not None:
            await self._health.stopping()
        if self._server is not None:
            await self._server.stop(STOP_GRACE_SECONDS)
            self._server = None


def _address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _reflection_pool() -> Any:
    """The inference service's private pool, taught the health and reflection services
    too, so that reflection describes every service this server offers."""
    for module in (health_pb2, reflection_pb2):
        proto = descriptor_pb2.FileDescriptorProto()
        module.DESCRIPTOR.CopyToProto(proto)
        with contextlib.suppress(TypeError):  # added by an earlier server of this process
            protos.POOL.Add(proto)
    return protos.POOL
