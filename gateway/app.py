"""The app factory: wires registry, runtimes, router and data plane into one Litestar app."""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from litestar import Litestar, MediaType, Request, Response
from litestar.di import Provide
from litestar.exceptions import HTTPException, ValidationException
from litestar.openapi import OpenAPIConfig

from gateway.dataplane import DataPlane
from gateway.errors import GatewayError
from gateway.http import inference_router
from gateway.protocol import ErrorResponse
from gateway.repository import ModelRepository
from gateway.routing import Router
from gateway.settings import Settings, load_settings
from registry import ModelRegistry

logger = logging.getLogger("driftgate")


def create_app(settings: Settings) -> Litestar:
    """A gateway serving the registry under `settings.home`."""
    registry = ModelRegistry(settings.registry_path)
    executor = ThreadPoolExecutor(settings.inference_threads, thread_name_prefix="driftgate-infer")
    repository = ModelRepository(registry, executor, intra_op_threads=settings.intra_op_threads)
    dataplane = DataPlane(repository, Router(registry))

    async def shutdown() -> None:
        executor.shutdown(wait=True, cancel_futures=True)

    return Litestar(
        route_handlers=[inference_router()],
        dependencies={
            "dataplane": Provide(lambda: dataplane, use_cache=True, sync_to_thread=False),
            "settings": Provide(lambda: settings, use_cache=True, sync_to_thread=False),
        },
        on_startup=[dataplane.load_stable_versions],
        on_shutdown=[shutdown],
        exception_handlers={
            GatewayError: _gateway_error,
            HTTPException: _http_error,
            Exception: _unexpected_error,
        },
        request_max_body_size=settings.max_request_bytes,
        openapi_config=OpenAPIConfig(title="driftgate", version="0.1.0", path="/docs"),
    )


def app_from_environment() -> Litestar:
    """Factory for `uvicorn --factory` workers: settings from `DRIFTGATE_*` variables."""
    settings = load_settings()
    logging.basicConfig(level=settings.log_level.upper())
    return create_app(settings)


def _error(message: str, status_code: int) -> Response[ErrorResponse]:
    return Response(
        ErrorResponse(error=message), status_code=status_code, media_type=MediaType.JSON
    )


def _gateway_error(_: Request[Any, Any, Any], exc: GatewayError) -> Response[ErrorResponse]:
    return _error(str(exc), exc.status_code)


def _http_error(_: Request[Any, Any, Any], exc: HTTPException) -> Response[ErrorResponse]:
    message = exc.detail
    if isinstance(exc, ValidationException) and exc.extra:
        message = f"{message}: {exc.extra}"
    return _error(message, exc.status_code)


def _unexpected_error(_: Request[Any, Any, Any], exc: Exception) -> Response[ErrorResponse]:
    logger.exception("unexpected error", exc_info=exc)
    return _error(f"internal error: {type(exc).__name__}: {exc}", 500)
