"""OpenTelemetry tracing: the span tree of an infer call on the real app, an incoming
`traceparent` continued, shadow copies in the caller's trace, nothing at all when off, and
one real gateway (two workers) exporting OTLP/HTTP to a receiver on loopback."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from litestar.testing import TestClient
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import ConsoleSpanExporter, SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF
from opentelemetry.trace import SpanKind

from benchmarks.otlp import Receiver, otlp_receiver
from gateway.app import create_app
from gateway.dataplane import DataPlane
from gateway.fast_infer import FastInfer
from gateway.settings import Settings
from gateway.tracing import exporters
from tests.conftest import ADMIN_TOKEN, gateway_process, stop_process

AFFINE = {"id": "call-1", "inputs": [{"name": "x", "shape": [2, 4], "datatype": "FP32",
                                      "data": [1, 2, 3, 4, 5, 6, 7, 8]}]}  # fmt: skip
TRACE_ID = "0af7651916cd43dd8448eb211c80319c"
PARENT_ID = "b7ad6b7169203331"
TRACEPARENT = f"00-{TRACE_ID}-{PARENT_ID}-01"
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
STEPS = ["decode", "route", "run", "encode"]


@pytest.fixture
def spans() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture
def traced(settings: Settings, spans: InMemorySpanExporter) -> Iterator[TestClient[Any]]:
    """The real app, traced by a provider whose spans are kept in memory."""
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(spans))
    with TestClient(app=create_app(settings, tracer_provider=provider)) as client:
        yield client
    provider.shutdown()


def server_span(spans: InMemorySpanExporter) -> ReadableSpan:
    (found,) = [s for s in spans.get_finished_spans() if s.kind == SpanKind.SERVER]
    return found


def children(spans: InMemorySpanExporter, parent: ReadableSpan) -> dict[str, ReadableSpan]:
    assert parent.context is not None
    return {
        span.name: span
        for span in spans.get_finished_spans()
        if span.parent is not None and span.parent.span_id == parent.context.span_id
    }


def test_an_infer_call_is_a_server_span_with_its_steps(
    traced: TestClient[Any], spans: InMemorySpanExporter
) -> None:
    answer = traced.post("/v2/models/affine/infer", json=AFFINE)
    assert answer.status_code == 200
    root = server_span(spans)
    assert root.name == "POST /v2/models/{name}/infer"  # the route, never the model's name
    assert root.parent is None
    assert root.attributes is not None
    assert root.attributes["http.route"] == "/v2/models/{name}/infer"
    assert {key: root.attributes[key] for key in ("driftgate.model", "driftgate.role")} == {
        "driftgate.model": "affine",
        "driftgate.role": "stable",
    }
    assert root.attributes["driftgate.version"] == 2
    assert root.attributes["driftgate.request_id"] == "call-1"
    steps = children(spans, root)
    assert sorted(steps, key=lambda name: steps[name].start_time or 0) == STEPS
    run = steps["run"].attributes
    assert run is not None
    assert (run["driftgate.model"], run["driftgate.version"], run["driftgate.rows"]) == (
        "affine",
        2,
        2,
    )
    route = steps["route"].attributes
    assert route is not None
    assert route["driftgate.role"] == "stable"
    for span in steps.values():
        assert span.context is not None
        assert root.context is not None
        assert span.context.trace_id == root.context.trace_id


def test_an_incoming_traceparent_is_continued(
    traced: TestClient[Any], spans: InMemorySpanExporter
) -> None:
    answer = traced.post(
        "/v2/models/affine/infer", json=AFFINE, headers={"traceparent": TRACEPARENT}
    )
    assert answer.status_code == 200
    root = server_span(spans)
    assert root.context is not None
    assert root.parent is not None
    assert f"{root.context.trace_id:032x}" == TRACE_ID
    assert f"{root.parent.span_id:016x}" == PARENT_ID
    assert set(children(spans, root)) == set(STEPS)


def test_a_failed_call_marks_its_step(traced: TestClient[Any], spans: InMemorySpanExporter) -> None:
    answer = traced.post("/v2/models/affine/infer", content=b"{not json")
    assert answer.status_code == 400
    steps = children(spans, server_span(spans))
    assert set(steps) == {"decode"}  # it went no further
    assert not steps["decode"].status.is_ok
    assert [event.name for event in steps["decode"].events] == ["exception"]


def test_a_shadow_copy_runs_in_the_callers_trace(
    traced: TestClient[Any], spans: InMemorySpanExporter
) -> None:
    policy = {"stable": 2, "shadows": [{"version": 1, "percent": 100}]}
    assert traced.put("/admin/models/affine/deployment", json=policy, headers=ADMIN).is_success
    spans.clear()
    headers = {"traceparent": TRACEPARENT}
    assert traced.post("/v2/models/affine/infer", json=AFFINE, headers=headers).is_success
    deadline = time.monotonic() + 10
    while not [s for s in spans.get_finished_spans() if s.name == "shadow"]:
        assert time.monotonic() < deadline, "no shadow span"
        time.sleep(0.05)
    root = server_span(spans)
    shadow = children(spans, root)["shadow"]  # queued, run later, still the call's child
    assert shadow.context is not None
    assert f"{shadow.context.trace_id:032x}" == TRACE_ID
    assert shadow.attributes is not None
    assert dict(shadow.attributes) == {
        "driftgate.model": "affine",
        "driftgate.version": 1,
        "driftgate.role": "shadow",
    }
    run = children(spans, shadow)["run"]
    assert run.attributes is not None
    assert run.attributes["driftgate.version"] == 1


def test_a_call_sampled_out_is_served_and_records_nothing(settings: Settings) -> None:
    spans = InMemorySpanExporter()
    provider = TracerProvider(sampler=ALWAYS_OFF)
    provider.add_span_processor(SimpleSpanProcessor(spans))
    with TestClient(app=create_app(settings, tracer_provider=provider)) as client:
        policy = {"stable": 2, "shadows": [{"version": 1, "percent": 100}]}
        assert client.put("/admin/models/affine/deployment", json=policy, headers=ADMIN).is_success
        headers = {"traceparent": TRACEPARENT}
        answer = client.post("/v2/models/affine/infer", json=AFFINE, headers=headers)
        assert answer.json()["outputs"][0]["data"] == [3, 4, 5, 6, 7, 8, 9, 10]  # v2 adds 2
    assert spans.get_finished_spans() == ()


def test_tracing_off_leaves_the_request_path_as_it_is(settings: Settings) -> None:
    app = create_app(settings)
    assert type(app) is FastInfer  # no middleware around it
    assert type(app._dataplane) is DataPlane  # no traced steps either


def test_otel_traces_exporter_picks_the_exporters(monkeypatch: pytest.MonkeyPatch) -> None:
    assert exporters({"OTEL_TRACES_EXPORTER": "none"}) == []
    (default,) = exporters({})
    assert isinstance(default, OTLPSpanExporter)  # OTLP over HTTP
    both = exporters({"OTEL_TRACES_EXPORTER": "otlp, console"})
    assert [type(exporter) for exporter in both] == [OTLPSpanExporter, ConsoleSpanExporter]
    with pytest.raises(ValueError, match="not supported"):
        exporters({"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"})
    with pytest.raises(ValueError, match="'zipkin', which is not installed"):
        exporters({"OTEL_TRACES_EXPORTER": "zipkin"})


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    """An OTLP/HTTP trace receiver on loopback (the tracing benchmark's) keeping every span."""
    with otlp_receiver() as found:
        yield found


@pytest.mark.e2e
def test_a_gateway_exports_its_spans_over_otlp_http(home: Path, receiver: Receiver) -> None:
    """Two worker processes, each with its own provider; a long export delay, so the spans
    arrive only because each worker flushes them as it shuts down."""
    calls = [f"{index:032x}" for index in range(1, 7)]
    with gateway_process(
        home,
        DRIFTGATE_TRACING="true",
        DRIFTGATE_WORKERS="2",
        OTEL_EXPORTER_OTLP_ENDPOINT=receiver.url,
        OTEL_SERVICE_NAME="gateway-under-test",
        OTEL_BSP_SCHEDULE_DELAY="600000",
    ) as (url, process):
        for trace_id in calls:
            headers = {"traceparent": f"00-{trace_id}-{PARENT_ID}-01"}
            answer = httpx.post(f"{url}/v2/models/affine/infer", json=AFFINE, headers=headers)
            assert answer.status_code == 200
        assert receiver.received == []  # held by the batch processors until shutdown
        stop_process(process)
    by_trace: dict[str, list[Any]] = {}
    for resource, span in receiver.received:
        assert resource["service.name"] == "gateway-under-test"
        by_trace.setdefault(span.trace_id.hex(), []).append(span)
    # Every call's trace, from whichever worker served it (the readiness probes' too).
    assert set(calls) <= set(by_trace)
    for trace in (by_trace[trace_id] for trace_id in calls):
        (root,) = [span for span in trace if span.parent_span_id.hex() == PARENT_ID]
        assert root.name == "POST /v2/models/{name}/infer"
        assert root.kind == root.SPAN_KIND_SERVER
        steps = {span.name: span for span in trace if span.parent_span_id == root.span_id}
        assert sorted(steps, key=lambda name: steps[name].start_time_unix_nano) == STEPS
        attributes = {a.key: a.value for a in steps["run"].attributes}
        assert attributes["driftgate.model"].string_value == "affine"
        assert attributes["driftgate.rows"].int_value == 2
