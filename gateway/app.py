"""The app factory: wires registry, state, runtimes, router and data plane into one app."""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import TYPE_CHECKING, Any

from litestar import Litestar, MediaType, Request, Response
from litestar.di import Provide
from litestar.exceptions import HTTPException, ValidationException
from litestar.openapi import OpenAPIConfig
from litestar.openapi.spec import Components, SecurityScheme
from litestar.types import ASGIApp
from opentelemetry.trace import TracerProvider
from prometheus_client import CollectorRegistry

from gateway.admin import admin_router, sweep_uploads
from gateway.auth import EXPLANATIONS, LABELS, TokenGuard
from gateway.compare_api import compare_router
from gateway.components import (
    drift_panes,
    inference_log,
    leadership,
    monitor_config,
    open_registry,
    prediction_log,
    retraining_config,
    retraining_episodes,
    runtime_builder,
    state_backend,
)
from gateway.content import JSONRequest
from gateway.dataplane import DataPlane
from gateway.deployments import DeploymentManager
from gateway.errors import GatewayError, disk_full, status_of
from gateway.explain import Explainer, explain_limits
from gateway.explain_api import explain_router
from gateway.fast_infer import AccessLoggedInfer, FastInfer
from gateway.http import inference_router
from gateway.live_evidence import LiveEvidence
from gateway.logs import configure as configure_logging
from gateway.monitor_api import monitor_router
from gateway.openapi_docs import DocsOnDemand
from gateway.protocol import ErrorResponse
from gateway.repository import ModelRepository
from gateway.rollouts import RolloutController
from gateway.routing import Router
from gateway.settings import Settings, load_settings
from gateway.shadows import ShadowMirror
from gateway.state_metrics import StateCollector
from gateway.telemetry import metrics_endpoint
from gateway.tokens import parse_tokens
from gateway.tracing import TracedDataPlane, tracing_of
from gateway.ui import console_router, console_templates, docs_plugins, docs_router
from monitor.agreement import ShadowAgreement
from monitor.drift import DriftMonitor
from monitor.metrics import GatewayMetrics
from monitor.quality import QualityMonitor
from monitor.retraining import RetrainingTrigger
from monitor.traffic import TrafficPanes
from monitor.webhooks import WebhookSender
from registry import (
    RegistryError,
)

if TYPE_CHECKING:
    from gateway.grpc import GrpcServer

logger = logging.getLogger("driftgate")
_DOCS_PATH = "/docs"


def create_app(
    settings: Settings,
    *,
    tracer_provider: TracerProvider | None = None,
    serve_grpc: bool = False,
) -> ASGIApp:
    """A gateway serving the registry under `settings.home`: the Litestar app, with the
    infer calls taken ahead of it by the lean path (`gateway.fast_infer`), traced when
    `settings.tracing` is on or a `tracer_provider` is given (`gateway.tracing`).
    `serve_grpc`: also serve the Open Inference Protocol over gRPC on `settings.grpc_port`
    (unless 0) from the app's startup to its shutdown, over the same data plane; every
    `driftgate serve` worker does."""
    tracing = tracing_of(settings.tracing, tracer_provider)
    tracer = tracing.tracer if tracing is not None else None
    registry = open_registry(settings)
    executor = ThreadPoolExecutor(settings.inference_threads, thread_name_prefix="driftgate-infer")
    panes = drift_panes(settings)
    config = monitor_config(settings)
    traffic = TrafficPanes(pane_seconds=config.pane_seconds, max_panes=config.window_panes + 1)
    metrics = GatewayMetrics(CollectorRegistry(auto_describe=True))
    predictions = prediction_log(settings, traffic, metrics)
    monitor = DriftMonitor(config, panes, predictions, QualityMonitor(traffic, panes))
    repository = ModelRepository(
        registry, runtime_builder(settings, executor, metrics, tracer), on_load=monitor.watch
    )
    router = Router()
    deployments = DeploymentManager(
        registry,
        repository,
        router,
        state_backend(settings),
        on_commit=lambda change: metrics.decisions.labels(
            change.model, change.action, change.actor
        ).inc(),
        approval_ttl=settings.approval_ttl_seconds,
    )
    mirror = ShadowMirror(
        repository,
        ShadowAgreement(),
        capacity=settings.shadow_queue_size,
        workers=settings.shadow_workers,
        tracer=tracer,
    )
    state_metrics = StateCollector(router, deployments, mirror, monitor, repository)
    metrics.registry.register(state_metrics)
    call_log = inference_log(settings, metrics)  # None while no model's calls are logged
    make_dataplane = DataPlane if tracer is None else partial(TracedDataPlane, tracer=tracer)
    dataplane = make_dataplane(
        repository=repository,
        router=router,
        deployments=deployments,
        mirror=mirror,
        metrics=metrics,
        monitor=monitor,
        traffic=traffic,
        sample_rate=settings.sample_rate_of,
        inference_log=call_log,
    )
    grpc_server = _grpc_server(dataplane, settings) if serve_grpc else None
    episodes = retraining_episodes(settings)
    webhooks = WebhookSender(settings.webhook_secret, metrics)  # closed by the controller
    retraining = RetrainingTrigger(
        retraining_config(settings),
        monitor,
        deployments.state,
        predictions=predictions,
        episodes=episodes,
        webhooks=webhooks,
    )
    controller = RolloutController(
        manager=deployments,
        monitor=monitor,
        traffic=traffic,
        panes=panes,
        leadership=leadership(settings),
        retraining=retraining,
        webhooks=webhooks,
    )
    tokens = parse_tokens(settings.tokens)
    guard = TokenGuard(tokens)
    explainer = Explainer(dataplane, registry, explain_limits(settings))
    evidence = LiveEvidence(monitor, traffic, panes, mirror.agreement)  # API and console

    async def start_monitor() -> None:
        await predictions.start()
        await monitor.start()
        if call_log is not None:
            await call_log.start()

    async def shutdown() -> None:
        await controller.close()
        await monitor.close()
        await predictions.close()  # after the monitor: its last samples are written too
        if call_log is not None:
            await call_log.close()  # the calls and labels still queued, for a few seconds
        await episodes.close()
        await panes.close()
        await mirror.close()
        await deployments.state.close()
        executor.shutdown(wait=True, cancel_futures=True)
        if tracing is not None:
            await tracing.close()  # the spans of the calls above are exported

    app = Litestar(
        route_handlers=[
            inference_router(),
            admin_router(guard, max_upload_bytes=settings.max_upload_bytes),
            metrics_endpoint(metrics.registry, state_metrics),
            monitor_router(TokenGuard(tokens, LABELS)),
            compare_router(guard, evidence),
            explain_router(TokenGuard(tokens, EXPLANATIONS), explainer),
            *(
                [
                    console_router(
                        tokens,
                        session_seconds=settings.console_session_seconds,
                        evidence=evidence,
                    )
                ]
                if settings.console
                else []
            ),
        ],
        dependencies={
            "dataplane": Provide(lambda: dataplane, use_cache=True, sync_to_thread=False),
            "manager": Provide(lambda: deployments, use_cache=True, sync_to_thread=False),
            "settings": Provide(lambda: settings, use_cache=True, sync_to_thread=False),
            "monitor": Provide(lambda: monitor, use_cache=True, sync_to_thread=False),
            "controller": Provide(lambda: controller, use_cache=True, sync_to_thread=False),
        },
        on_startup=[
            lambda: sweep_uploads(settings),
            registry.sweep,  # what killed registrations and exports left
            retraining.sweep,
            start_monitor,
            mirror.start,
            deployments.start,
            controller.start,
            *([grpc_server.start] if grpc_server is not None else []),
        ],
        before_request=DocsOnDemand(_DOCS_PATH),  # the OpenAPI document on its first request
        # gRPC first: its calls under way finish before the parts they use close.
        on_shutdown=[
            *([grpc_server.stop] if grpc_server is not None else []),
            shutdown,
            explainer.close,  # explanations under way end by their deadline
        ],
        exception_handlers={
            GatewayError: _gateway_error,
            RegistryError: _registry_error,
            HTTPException: _http_error,
            OSError: _os_error,
            Exception: _unexpected_error,
        },
        request_max_body_size=settings.max_request_bytes,
        request_class=JSONRequest,
        logging_config=None,  # gateway.logs configures logging, once per process
        template_config=console_templates(),
        openapi_config=OpenAPIConfig(
            title="driftgate",
            version="0.1.0",
            path=_DOCS_PATH,
            components=Components(
                security_schemes={"bearer": SecurityScheme(type="http", scheme="bearer")}
            ),
            render_plugins=docs_plugins(),  # Swagger UI from vendored files: works offline
            openapi_router=docs_router(),
        ),
    )
    infer = AccessLoggedInfer if settings.access_log else FastInfer
    served = infer(app, dataplane, max_request_bytes=settings.max_request_bytes)
    return served if tracing is None else tracing.instrument(served)


def _grpc_server(dataplane: DataPlane, settings: Settings) -> GrpcServer | None:
    """The gRPC server of this app, or None when `grpc_port` is 0."""
    if not settings.grpc_port:
        return None
    from gateway.grpc import GrpcServer  # grpcio is loaded only where gRPC is served

    return GrpcServer(dataplane, settings)


def app_from_environment() -> ASGIApp:
    """Factory for `uvicorn --factory` workers: settings from `DRIFTGATE_*` variables;
    logging configured for this process (`gateway.logs`)."""
    settings = load_settings()
    configure_logging(settings)
    return create_app(settings, serve_grpc=True)


def _error(message: str, status_code: int, headers: dict[str, str] | None = None) -> Response[Any]:
    return Response(
        ErrorResponse(error=message),
        status_code=status_code,
        media_type=MediaType.JSON,
        headers=headers,
    )


def _gateway_error(_: Request[Any, Any, Any], exc: GatewayError) -> Response[Any]:
    return _error(str(exc), exc.status_code)


def _registry_error(_: Request[Any, Any, Any], exc: RegistryError) -> Response[Any]:
    return _error(str(exc), status_of(exc))


def _http_error(_: Request[Any, Any, Any], exc: HTTPException) -> Response[Any]:
    message = exc.detail
    if isinstance(exc, ValidationException) and exc.extra:
        message = f"{message}: {exc.extra}"
    return _error(message, exc.status_code, exc.headers)


def _os_error(request: Request[Any, Any, Any], exc: OSError) -> Response[Any]:
    """A full data directory is said as such (507; the write was undone), without paths."""
    if disk_full(exc):
        message = f"no space left to store this ({exc.strerror}): free space and try again"
        return _error(message, status_of(exc))
    return _unexpected_error(request, exc)


def _unexpected_error(_: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    logger.exception("unexpected error", exc_info=exc)
    return _error(f"internal error: {type(exc).__name__}: {exc}", 500)
