"""`inference.GRPCInferenceService`: thin handlers over the DataPlane.

Each handler parses its message, asks the data plane, which decides everything (routing,
validation, batching, shadows, sampling, metrics), and frames the answer. Handlers take
and return bytes (the method handlers have no serializers): a message that does not parse
is the caller's mistake, INVALID_ARGUMENT, where gRPC's own deserializer would answer
INTERNAL. A successful ModelInfer's trailing metadata names the version that answered
and its role (`x-driftgate-version`, `x-driftgate-role`), as REST's headers do.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, NoReturn

import grpc
from google.protobuf.message import DecodeError

from gateway.dataplane import DataPlane
from gateway.errors import BadRequestError
from gateway.grpc import protos
from gateway.grpc.codec import GRPC
from gateway.grpc.status import grpc_status

ROUTING_KEY = "x-routing-key"
Handler = Callable[[bytes, grpc.aio.ServicerContext[bytes, bytes]], Awaitable[bytes]]


class InferenceServicer:
    """The six calls of the Open Inference Protocol over one data plane."""

    def __init__(self, dataplane: DataPlane) -> None:
        self._dataplane = dataplane

    def add_to(self, server: grpc.aio.Server) -> None:
        """Serve this service on `server`."""
        handlers: dict[str, Handler] = {
            "ServerLive": self.server_live,
            "ServerReady": self.server_ready,
            "ModelReady": self.model_ready,
            "ServerMetadata": self.server_metadata,
            "ModelMetadata": self.model_metadata,
            "ModelInfer": self.model_infer,
        }
        server.add_registered_method_handlers(
            protos.SERVICE,
            {name: grpc.unary_unary_rpc_method_handler(h) for name, h in handlers.items()},
        )

    async def server_live(self, body: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> bytes:
        """The process is up and answering."""
        await _parse(protos.ServerLiveRequest, body, context)
        return _bytes(protos.ServerLiveResponse(live=True))

    async def server_ready(self, body: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> bytes:
        """Ready as REST's `/v2/health/ready` is; when not, the trailing metadata's
        `x-driftgate-error` says why."""
        await _parse(protos.ServerReadyRequest, body, context)
        ready = self._dataplane.server_ready()
        if ready.error:
            context.set_trailing_metadata(((ERROR, ready.error),))
        return _bytes(protos.ServerReadyResponse(ready=ready.ready))

    async def model_ready(self, body: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> bytes:
        """Whether the model (version) can serve, loading it if needed; an unknown one is
        NOT_FOUND, and a version that cannot serve says why in `x-driftgate-error`."""
        request = await _parse(protos.ModelReadyRequest, body, context)
        try:
            ready = await self._dataplane.model_ready(request.name, request.version or None)
        except Exception as exc:
            await _abort(context, exc)
        if ready.error:
            context.set_trailing_metadata(((ERROR, ready.error),))
        return _bytes(protos.ModelReadyResponse(ready=ready.ready))

    async def server_metadata(
        self, body: bytes, context: grpc.aio.ServicerContext[Any, Any]
    ) -> bytes:
        """Name, version and protocol extensions of the server."""
        await _parse(protos.ServerMetadataRequest, body, context)
        metadata = self._dataplane.server_metadata()
        return _bytes(
            protos.ServerMetadataResponse(
                name=metadata.name, version=metadata.version, extensions=metadata.extensions
            )
        )

    async def model_metadata(
        self, body: bytes, context: grpc.aio.ServicerContext[Any, Any]
    ) -> bytes:
        """Inputs, outputs and versions of a model."""
        request = await _parse(protos.ModelMetadataRequest, body, context)
        try:
            metadata = await self._dataplane.model_metadata(request.name, request.version or None)
        except Exception as exc:
            await _abort(context, exc)
        tensor = protos.ModelMetadataResponse.TensorMetadata
        return _bytes(
            protos.ModelMetadataResponse(
                name=metadata.name,
                versions=metadata.versions,
                platform=metadata.platform,
                inputs=[
                    tensor(name=t.name, datatype=t.datatype, shape=t.shape) for t in metadata.inputs
                ],
                outputs=[
                    tensor(name=t.name, datatype=t.datatype, shape=t.shape)
                    for t in metadata.outputs
                ],
            )
        )

    async def model_infer(self, body: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> bytes:
        """One inference call, routed by the `x-routing-key` metadata, else the request id."""
        request = await _parse(protos.ModelInferRequest, body, context)
        try:
            result = await self._dataplane.infer(
                request.model_name,
                request.model_version or None,
                request,
                None,
                _routing_key(context),
                framing=GRPC,
            )
        except Exception as exc:  # every failure is answered with its status, never raised
            await _abort(context, exc)
        context.set_trailing_metadata(((VERSION, str(result.model_version)), (ROLE, result.role)))
        return result.body


VERSION, ROLE, ERROR = "x-driftgate-version", "x-driftgate-role", "x-driftgate-error"


async def _parse(kind: Any, body: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
    try:
        return kind.FromString(body)
    except DecodeError as exc:
        name = kind.DESCRIPTOR.full_name
        await _abort(context, BadRequestError(f"the request is not a valid {name}: {exc}"))


async def _abort(context: grpc.aio.ServicerContext[Any, Any], exc: Exception) -> NoReturn:
    code, message = grpc_status(exc)
    await context.abort(code, message)


def _routing_key(context: grpc.aio.ServicerContext[Any, Any]) -> str | None:
    for key, value in context.invocation_metadata() or ():
        if key == ROUTING_KEY:
            return value if isinstance(value, str) else value.decode("latin-1")
    return None


def _bytes(message: Any) -> bytes:
    data: bytes = message.SerializeToString()
    return data
