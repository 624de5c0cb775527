"""Open Inference Protocol REST routes besides infer (see `gateway.fast_infer`): thin
handlers over the DataPlane."""

from __future__ import annotations

from litestar import Response, Router, get
from litestar.di import NamedDependency
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import FromPath
from litestar.status_codes import HTTP_200_OK, HTTP_503_SERVICE_UNAVAILABLE

from gateway.dataplane import DataPlane
from gateway.protocol import (
    ErrorResponse,
    ModelMetadata,
    ModelReady,
    ServerLive,
    ServerMetadata,
    ServerReady,
)

_ERRORS = {
    status: ResponseSpec(data_container=ErrorResponse, description=description)
    for status, description in [
        (400, "Malformed request, or tensors that do not match the model's signature"),
        (404, "Unknown model or version"),
        (413, "Body over the configured size limit"),
        (500, "The model failed on valid input"),
        (503, "The version cannot be served (files damaged or missing); the error says why"),
    ]
}


@get("/health/live", summary="Server liveness", tags=["health"])
async def server_live() -> ServerLive:
    """The process is up and answering."""
    return ServerLive(live=True)


@get(
    "/health/ready",
    summary="Server readiness",
    tags=["health"],
    responses={503: ResponseSpec(data_container=ServerReady, description="Not ready, and why")},
)
async def server_ready(dataplane: NamedDependency[DataPlane]) -> Response[ServerReady]:
    """The server has loaded its stable versions (startup finishes before it listens), and
    its state backend accepts its credentials: one that refuses them is a configuration
    error, which answers 503 with the reason. An unreachable backend does not: the gateway
    serves the last known policy, as `/admin/status` reports."""
    ready = dataplane.server_ready()
    status = HTTP_200_OK if ready.ready else HTTP_503_SERVICE_UNAVAILABLE
    return Response(ready, status_code=status)


@get("/", summary="Server metadata", tags=["metadata"])
async def server_metadata(dataplane: NamedDependency[DataPlane]) -> ServerMetadata:
    """Name, version and protocol extensions of the server."""
    return dataplane.server_metadata()


@get(
    ["/models/{name:str}", "/models/{name:str}/versions/{version:str}"],
    summary="Model metadata",
    tags=["metadata"],
    responses=_ERRORS,
)
async def model_metadata(
    dataplane: NamedDependency[DataPlane], name: FromPath[str], version: FromPath[str | None] = None
) -> ModelMetadata:
    """Inputs, outputs and versions of a model."""
    return await dataplane.model_metadata(name, version)


@get(
    ["/models/{name:str}/ready", "/models/{name:str}/versions/{version:str}/ready"],
    summary="Model readiness",
    tags=["health"],
    responses={
        **_ERRORS,
        503: ResponseSpec(data_container=ModelReady, description="Not ready, and why"),
    },
)
async def model_ready(
    dataplane: NamedDependency[DataPlane], name: FromPath[str], version: FromPath[str | None] = None
) -> Response[ModelReady]:
    """Whether the model (version) is loaded and can serve; loads it if needed. A version
    that cannot be served answers 503 with `ready: false` and the reason in `error`."""
    ready = await dataplane.model_ready(name, version)
    return Response(ready, status_code=HTTP_200_OK if ready.ready else HTTP_503_SERVICE_UNAVAILABLE)


def inference_router() -> Router:
    """The `/v2` routes of the Open Inference Protocol."""
    return Router(
        path="/v2",
        route_handlers=[server_live, server_ready, server_metadata, model_metadata, model_ready],
    )
