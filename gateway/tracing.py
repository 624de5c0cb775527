"""OpenTelemetry tracing: off unless `settings.tracing` is on (or a test hands in a provider).

Configured as the OpenTelemetry SDK is everywhere, by the standard variables, which the SDK
reads itself: `OTEL_SERVICE_NAME` and `OTEL_RESOURCE_ATTRIBUTES` (the service is `driftgate`
unless they name one), `OTEL_TRACES_SAMPLER` and `OTEL_TRACES_SAMPLER_ARG` (default
`parentbased_always_on`), `OTEL_EXPORTER_OTLP_ENDPOINT` or `..._TRACES_ENDPOINT`, `_HEADERS`,
`_TIMEOUT`, `_COMPRESSION` and `_CERTIFICATE` (the OTLP/HTTP exporter), `OTEL_BSP_*` (the
batch span processor), `OTEL_PROPAGATORS` (default `tracecontext,baggage`) and
`OTEL_SDK_DISABLED`. `OTEL_TRACES_EXPORTER` picks the exporters, as the SDK's
auto-configuration would: `otlp` (the default: OTLP over HTTP with protobuf; no gRPC),
`console`, `none`, or the entry-point name of any other installed span exporter.

What is traced, when on:

- every HTTP call, by a server span (`ServerSpans`) around the outermost app (infer's lean
  path included), continuing an incoming W3C `traceparent`;
- an infer call's steps, as its children: `decode`, `route`, `run` (the model, with the
  rows it ran) and `encode`, with the model, version and role as attributes;
- each shadow copy: a `shadow` span (with its `run`), a child of the call's span although
  it runs later, off a queue (`gateway.shadows` captures the context when it queues).

Off, none of it exists: the app is not wrapped, and the data plane, runtimes and shadow
mirror are the plain ones, so the request path does no tracing work at all. Each process
(every `--workers` worker imports the app factory itself) makes its own provider, whose
batch processor is flushed when the app shuts down.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Mapping, Sequence
from importlib.metadata import entry_points
from typing import Any

import numpy as np
from litestar.enums import ScopeType
from litestar.types import ASGIApp, Message, Receive, Scope, Send
from opentelemetry import trace
from opentelemetry.environment_variables import OTEL_TRACES_EXPORTER
from opentelemetry.propagate import extract, get_global_textmap
from opentelemetry.sdk.environment_variables import (
    OTEL_EXPORTER_OTLP_PROTOCOL,
    OTEL_EXPORTER_OTLP_TRACES_PROTOCOL,
    OTEL_SDK_DISABLED,
)
from opentelemetry.sdk.resources import SERVICE_NAME, SERVICE_VERSION, Resource
from opentelemetry.sdk.trace import TracerProvider as SdkTracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
from opentelemetry.trace import (
    Span,
    SpanKind,
    StatusCode,
    Tracer,
    TracerProvider,
    get_current_span,
    use_span,
)
from opentelemetry.util.types import AttributeValue

from gateway.dataplane import DataPlane
from gateway.fast_infer import INFER_PATH
from gateway.protocol import InferenceRequest
from gateway.repository import LoadedVersion
from gateway.routing import Route
from gateway.runtime import Runtime
from gateway.tensors import decode_request, encode_response
from gateway.version import driftgate_version
from registry import TensorSpec

logger = logging.getLogger(__name__)
TRACER = "driftgate"
# Span attributes (no semantic convention covers model serving yet).
MODEL, VERSION, ROLE = "driftgate.model", "driftgate.version", "driftgate.role"
ROWS, REQUEST_ID = "driftgate.rows", "driftgate.request_id"
_EXPORTERS = "opentelemetry_traces_exporter"  # the SDK's entry-point group of span exporters


class Tracing:
    """The tracing of one app: its tracer, and its provider's shutdown when the app owns it."""

    def __init__(self, provider: TracerProvider, *, owned: bool) -> None:
        """`owned`: the app made `provider`, so it flushes and shuts it down at exit."""
        self.provider = provider
        self.tracer = provider.get_tracer(TRACER, driftgate_version())
        self._owned = owned

    def instrument(self, app: ASGIApp) -> ASGIApp:
        """`app` inside a server span per HTTP call (a W3C `traceparent` is continued)."""
        return ServerSpans(app, self.tracer)

    async def close(self) -> None:
        """Export what is still buffered and stop the exporters (an owned provider only)."""
        if self._owned and isinstance(self.provider, SdkTracerProvider):
            await asyncio.to_thread(self.provider.shutdown)


def tracing_of(enabled: bool, provider: TracerProvider | None = None) -> Tracing | None:
    """The app's tracing: `provider`'s if given, else one from the `OTEL_*` variables when
    `enabled` (and the SDK is not disabled), made this process's global provider so that
    other code's spans join the same traces; None when tracing is off."""
    if provider is not None:
        return Tracing(provider, owned=False)
    if not enabled:
        return None
    if os.environ.get(OTEL_SDK_DISABLED, "").strip().lower() == "true":
        logger.info("tracing is on but %s=true: not tracing", OTEL_SDK_DISABLED)
        return None
    made = sdk_provider(os.environ)
    trace.set_tracer_provider(made)
    return Tracing(made, owned=True)


def sdk_provider(environ: Mapping[str, str]) -> SdkTracerProvider:
    """An SDK provider as the `OTEL_*` variables configure it (see the module docstring):
    `environ`'s pick the exporters; the SDK reads the others from the process environment.

    Raises:
        ValueError: `OTEL_TRACES_EXPORTER` names an exporter that is not installed, or
            OTLP over another protocol than http/protobuf.
    """
    resource = Resource.create()
    if str(resource.attributes.get(SERVICE_NAME, "")).startswith("unknown_service"):
        resource = resource.merge(Resource({SERVICE_NAME: TRACER}))
    if SERVICE_VERSION not in resource.attributes:
        resource = resource.merge(Resource({SERVICE_VERSION: driftgate_version()}))
    provider = SdkTracerProvider(resource=resource)  # its sampler: OTEL_TRACES_SAMPLER
    for exporter in exporters(environ):
        provider.add_span_processor(BatchSpanProcessor(exporter))
    return provider


def exporters(environ: Mapping[str, str]) -> list[SpanExporter]:
    """The span exporters `OTEL_TRACES_EXPORTER` names (default `otlp`; `none`: none)."""
    names = [name.strip() for name in environ.get(OTEL_TRACES_EXPORTER, "otlp").split(",")]
    found: list[SpanExporter] = []
    for name in filter(None, names):
        if name == "none":
            return []
        entry = name
        if name == "otlp":
            protocol = (
                environ.get(OTEL_EXPORTER_OTLP_TRACES_PROTOCOL)
                or environ.get(OTEL_EXPORTER_OTLP_PROTOCOL)
                or "http/protobuf"
            )
            if protocol != "http/protobuf":
                raise ValueError(
                    f"OTLP traces over {protocol!r} are not supported: driftgate exports "
                    "OTLP over HTTP (OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf, port 4318)"
                )
            entry = "otlp_proto_http"
        candidates = entry_points(group=_EXPORTERS, name=entry)
        if not candidates:
            known = sorted({"otlp", "none", *(e.name for e in entry_points(group=_EXPORTERS))})
            raise ValueError(
                f"{OTEL_TRACES_EXPORTER} names {name!r}, which is not installed; "
                f"known here: {', '.join(known)}"
            )
        found.append(next(iter(candidates)).load()())
    return found


class ServerSpans:
    """ASGI middleware: each HTTP call in a SERVER span, continuing the caller's trace
    (`OTEL_PROPAGATORS`: W3C `traceparent` by default), named and described as the HTTP
    semantic conventions ask.

    Lean on purpose: opentelemetry-instrumentation-asgi's middleware, measured on the infer
    path, more than doubled the gateway's CPU per call even for the 99% of calls a 1%
    sampler drops (it decodes every header many times and builds every attribute before
    knowing whether the span records). Here a call that is not sampled pays for the
    context extraction and the sampler's decision only.
    """

    def __init__(self, app: ASGIApp, tracer: Tracer) -> None:
        self._app = app
        self._tracer = tracer
        # The headers the propagators read (`traceparent`, `tracestate`, `baggage`): a
        # call that sends none of them has no context to extract.
        self._fields = frozenset(field.encode("latin-1") for field in get_global_textmap().fields)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve the call inside its span (lifespan and other scopes pass through)."""
        if scope["type"] != ScopeType.HTTP:
            await self._app(scope, receive, send)
            return
        carrier = {
            name.decode("latin-1"): value.decode("latin-1")
            for name, value in scope["headers"]
            if name in self._fields
        }
        name, attributes = span_details(scope)
        span = self._tracer.start_span(
            name,
            context=extract(carrier) if carrier else None,
            kind=SpanKind.SERVER,
            attributes=attributes,
        )
        if not span.is_recording():
            # Sampled out: the span is not made current (its children would be dropped and
            # the call sends nothing downstream), which saves a context switch per call.
            await self._app(scope, receive, send)
            return
        span.set_attributes(_request_attributes(scope))
        with use_span(span, end_on_exit=True):
            await self._app(scope, receive, _status_recorder(span, send))


def span_details(scope: Scope) -> tuple[str, dict[str, AttributeValue]]:
    """The server span's name and first attributes: the method and, for infer, its route
    (never the model's name: span names stay few), as the HTTP semantic conventions ask."""
    method = str(scope.get("method", "HTTP"))
    attributes: dict[str, AttributeValue] = {"http.request.method": method}
    if match := INFER_PATH.match(scope.get("path", "")):
        route = "/v2/models/{name}" + ("/versions/{version}" if match[2] else "") + "/infer"
        attributes["http.route"] = route
        return f"{method} {route}", attributes
    return method, attributes


def _request_attributes(scope: Scope) -> dict[str, AttributeValue]:
    """What a recorded server span says of its request (HTTP semantic conventions)."""
    attributes: dict[str, AttributeValue] = {
        "url.path": scope["path"],
        "url.scheme": scope.get("scheme", "http"),
        "network.protocol.version": scope.get("http_version", "1.1"),
    }
    if server := scope.get("server"):
        attributes["server.address"], attributes["server.port"] = server[0], server[1]
    if client := scope.get("client"):
        attributes["client.address"] = client[0]
    for name, value in scope["headers"]:
        if name == b"user-agent":
            attributes["user_agent.original"] = value.decode("latin-1")
    return attributes


def _status_recorder(span: Span, send: Send) -> Send:
    """`send`, noting the response status on `span` (a 5xx is an error of the server)."""

    async def recording(message: Message) -> None:
        if message["type"] == "http.response.start":
            status = message["status"]
            span.set_attribute("http.response.status_code", status)
            if status >= 500:
                span.set_status(StatusCode.ERROR)
        await send(message)

    return recording


class TracedRuntime:
    """A Runtime whose runs are `run` spans (model, version, rows) of the traced call."""

    def __init__(self, runtime: Runtime, tracer: Tracer, *, model: str, version: int) -> None:
        self._runtime = runtime
        self._tracer = tracer
        self._attributes: dict[str, AttributeValue] = {MODEL: model, VERSION: version}

    async def predict(
        self, inputs: Mapping[str, np.ndarray], outputs: Sequence[str]
    ) -> list[np.ndarray]:
        """The wrapped runtime's `predict`, in a span when the call is sampled."""
        if not get_current_span().is_recording():  # sampled out: its children would be too
            return await self._runtime.predict(inputs, outputs)
        with self._tracer.start_as_current_span("run", attributes=self._attributes) as span:
            first = next(iter(inputs.values()), None)
            span.set_attribute(ROWS, first.shape[0] if first is not None and first.ndim else 1)
            return await self._runtime.predict(inputs, outputs)


class TracedDataPlane(DataPlane):
    """The data plane with an infer call's steps as spans (`decode`, `route`, `encode`;
    `run` comes from `TracedRuntime`) under the call's server span, which gets the
    model, version and role. A call whose span is sampled out runs the plain steps."""

    def __init__(self, *, tracer: Tracer, **parts: Any) -> None:
        """`parts`: the `DataPlane`'s own arguments."""
        super().__init__(**parts)
        self._tracer = tracer

    def _decode(
        self, body: bytes, header_length: int | None
    ) -> tuple[InferenceRequest, memoryview]:
        if not get_current_span().is_recording():
            return decode_request(body, header_length)
        server = get_current_span()
        with self._tracer.start_as_current_span("decode"):
            request, binary = decode_request(body, header_length)
        if request.id is not None:
            server.set_attribute(REQUEST_ID, request.id)
        return request, binary

    async def resolve(
        self, name: str, version: str | None, key: str | None = None
    ) -> tuple[LoadedVersion, Route]:
        """The routed version, in a `route` span; the call's span learns model and role."""
        server = get_current_span()
        if not server.is_recording():
            return await super().resolve(name, version, key)
        with self._tracer.start_as_current_span("route", attributes={MODEL: name}) as span:
            loaded, route = await super().resolve(name, version, key)
            chosen: dict[str, AttributeValue] = {
                MODEL: name,
                VERSION: route.version,
                ROLE: route.role,
            }
            span.set_attributes(chosen)
        server.set_attributes(chosen)
        return loaded, route

    def _encode(
        self,
        *,
        model_name: str,
        model_version: int,
        request_id: str | None,
        outputs: Sequence[tuple[TensorSpec, np.ndarray, bool]],
    ) -> tuple[bytes, int | None]:
        span = (
            self._tracer.start_as_current_span(
                "encode", attributes={MODEL: model_name, VERSION: model_version}
            )
            if get_current_span().is_recording()
            else contextlib.nullcontext()
        )
        with span:
            return encode_response(
                model_name=model_name,
                model_version=model_version,
                request_id=request_id,
                outputs=outputs,
            )
