"""The inference log against the real things: Parquet files on disk, a real Redis Stream, an
HTTP receiver on loopback, a sink that stops answering, sensitive features, the trace id,
and `driftgate log export` on a real gateway process's files."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import polars as pl
import pytest
import redis
from litestar.testing import TestClient
from opentelemetry import trace
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from gateway.app import create_app
from gateway.settings import Settings
from monitor.inference_log import InferenceLog, LogConfig, ParquetSink, Privacy, read_log
from monitor.inference_log.parquet import PART
from monitor.metrics import GatewayMetrics
from monitor.privacy import keyed_hash, protect_sensitive
from registry import ModelRegistry
from registry.datatypes import OIP_TO_NUMPY
from tests.conftest import LABELLER, TOKENS, RedisServer, running_gateway
from tests.models import ALL_TYPES

Client = TestClient  # type: ignore[type-arg]
HASH_KEY = "0123456789abcdef-log-key"
ROWS = np.array([[0.5, -1.0, 2.0, 3.5], [1.5, 0.25, -2.0, 0.0]], dtype=np.float32)
LOGGED = {"inference_log_rate": 1.0, "inference_log_flush_seconds": 0.05, "tokens": TOKENS}


class Receiver:
    """An HTTP endpoint on loopback: keeps every POST, answers the queued statuses (then
    200), and holds each request while its gate is closed."""

    def __init__(self) -> None:
        self.posts: list[tuple[int, str, bytes]] = []  # (status answered, content type, body)
        self.statuses: deque[int] = deque()
        self.gate = threading.Event()
        self.gate.set()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["content-length"]))
                receiver.gate.wait(timeout=30)
                status = receiver.statuses.popleft() if receiver.statuses else 200
                receiver.posts.append((status, self.headers["content-type"], body))
                self.send_response(status)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/events"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def events(self) -> list[dict[str, Any]]:
        """Every CloudEvent of the batches it accepted, in order."""
        return [
            event for status, _, body in self.posts if status < 300 for event in json.loads(body)
        ]

    def __enter__(self) -> Receiver:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.gate.set()
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver() as running:
        yield running


@pytest.fixture
def sensitive_home(tmp_path: Path, artifacts: Path) -> Path:
    """Affine version 1 with feature f1 marked sensitive."""
    ModelRegistry(tmp_path / "models").register(
        "affine",
        artifacts / "affine.onnx",
        artifacts / "affine.parquet",
        target="label",
        sensitive=["f1"],
    )
    return tmp_path


def infer(
    client: Client | httpx.Client, request_id: str, rows: np.ndarray = ROWS, **kw: Any
) -> None:
    body = {
        "id": request_id,
        "inputs": [
            {
                "name": "x",
                "shape": list(rows.shape),
                "datatype": "FP32",
                "data": rows.ravel().tolist(),
            }
        ],
    }
    response = client.post(kw.pop("path", "/v2/models/affine/infer"), json=body, **kw)
    assert response.status_code == 200, response.text


def counter(client: Client | httpx.Client, family: str, **labels: str) -> float:
    """A counter's value from `GET /metrics` (0 when the series is absent)."""
    for metric in text_string_to_metric_families(client.get("/metrics").text):
        for sample in metric.samples:
            if sample.name == f"{family}_total" and sample.labels == labels:
                return float(sample.value)
    return 0.0


def eventually(check: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def log_files(home: Path, model: str = "affine") -> list[Path]:
    return sorted((home / "inference-log" / model).glob("*/part-*.parquet"))


def test_the_log_is_off_by_default_and_refuses_to_log_nowhere(settings: Settings) -> None:
    with TestClient(app=create_app(settings)) as client:
        infer(client, "off")
        assert "driftgate_inference_log_records_total{" not in client.get("/metrics").text
    assert not (settings.home / "inference-log").exists()
    with pytest.raises(ValueError, match="nowhere to go"):
        Settings(inference_log_rate=0.5)
    with pytest.raises(ValueError, match="nowhere to go"):
        Settings(model_inference_log_rates={"affine": 1.0})
    with pytest.raises(ValueError, match="needs redis_url"):
        Settings(inference_log_rate=1.0, inference_log_stream="driftgate:log")


def test_parquet_files_roll_atomically_with_a_column_per_feature_and_output(home: Path) -> None:
    settings = Settings(
        home=home, inference_log_parquet=True, inference_log_roll_seconds=0.2, **LOGGED
    )
    with TestClient(app=create_app(settings)) as client:
        for index in range(5):
            infer(client, f"r{index}", headers={"x-routing-key": "user-7"} if index == 0 else {})
        infer(client, "v1", path="/v2/models/affine/versions/1/infer")  # routed: 2, the latest
        eventually(lambda: len(log_files(home)) >= 2)
        eventually(lambda: counter(client, "driftgate_inference_log_records", sink="parquet") == 6)
    files = log_files(home)
    assert {path.parent.name for path in files} == {datetime.now(UTC).strftime("%Y-%m-%d")}
    assert not list((home / "inference-log").rglob(".*.tmp"))  # written whole, then renamed
    frame = pl.concat([pl.read_parquet(path) for path in files], how="diagonal").sort("time", "row")
    assert frame.columns == [
        *("request_id", "row", "time", "model", "version", "role", "latency_seconds"),
        *("routing_key", "trace_id", "f0", "f1", "f2", "f3"),
        *(f"output:y[{index}]" for index in range(4)),
        "output:total",
    ]
    assert frame.height == 12  # a row per row of each request
    first = frame.filter(pl.col("request_id") == "r0")
    assert first.get_column("row").to_list() == [0, 1]
    np.testing.assert_array_equal(first.select("f0", "f1", "f2", "f3").to_numpy(), ROWS)
    np.testing.assert_allclose(first.get_column("output:y[2]").to_numpy(), ROWS[:, 2] + 2)
    np.testing.assert_allclose(first.get_column("output:total").to_numpy(), ROWS.sum(axis=1))
    assert first.get_column("routing_key").to_list() == ["user-7"] * 2
    assert frame.filter(pl.col("request_id") == "r1").get_column("routing_key")[0] == "r1"
    assert set(frame.get_column("role")) == {"stable", "explicit"}
    assert frame.filter(pl.col("request_id") == "v1").get_column("version").to_list() == [1, 1]
    assert frame.filter(pl.col("request_id") == "r4").get_column("version").to_list() == [2, 2]
    assert (frame.get_column("latency_seconds") > 0).all()
    assert frame.get_column("trace_id").null_count() == frame.height  # no trace here
    versions = {match["version"] for path in files if (match := PART.match(path.name))}
    assert versions == {"1", "2"}  # a file holds one version


def test_every_datatype_is_logged_typed(home: Path) -> None:
    """The identity model takes one [batch] input per OIP datatype (the `columns` layout)."""
    arrays = {
        datatype.lower(): np.array(["a", "ü"], dtype=object)
        if datatype == "BYTES"
        else np.array([1, 0], dtype=OIP_TO_NUMPY[datatype])
        for datatype in ALL_TYPES
    }
    inputs = [
        {"name": f"in_{name}", "shape": [2], "datatype": datatype, "data": array.tolist()}
        for (name, array), datatype in zip(arrays.items(), ALL_TYPES, strict=True)
    ]
    settings = Settings(home=home, inference_log_parquet=True, **LOGGED)
    with TestClient(app=create_app(settings)) as client:
        response = client.post("/v2/models/identity/infer", json={"id": "t", "inputs": inputs})
        assert response.status_code == 200, response.text
    (path,) = log_files(home, "identity")  # written at shutdown
    frame = pl.read_parquet(path)
    assert frame.schema["in_bytes"] == pl.String
    assert frame.get_column("in_bytes").to_list() == ["a", "ü"]
    assert frame.schema["in_bool"] == pl.Boolean
    assert frame.schema["in_int8"] == pl.Int8
    assert frame.schema["output:out_uint64"] == pl.UInt64
    assert frame.get_column("output:out_fp16").to_list() == [1.0, 0.0]


def test_redis_stream_gets_cloudevents_bounded_by_maxlen(
    home: Path, redis_server: RedisServer
) -> None:
    settings = Settings(
        home=home,
        redis_url=redis_server.url,
        inference_log_stream="driftgate:inference-log",
        inference_log_stream_maxlen=10,
        **LOGGED,
    )
    stream = redis.Redis.from_url(redis_server.url)
    with TestClient(app=create_app(settings)) as client:
        infer(client, "first", headers={"x-routing-key": "k1"})
        eventually(lambda: stream.xlen("driftgate:inference-log") == 1)
        ((_, fields),) = stream.xrange("driftgate:inference-log")
        assert (fields[b"type"], fields[b"model"]) == (b"io.driftgate.inference", b"affine")
        event = json.loads(fields[b"event"])
        assert {key: event[key] for key in ("specversion", "id", "source", "type")} == {
            "specversion": "1.0",
            "id": "first",
            "source": "/v2/models/affine/versions/2",
            "type": "io.driftgate.inference",
        }
        assert event["datacontenttype"] == "application/json"
        assert datetime.fromisoformat(event["time"]) > datetime.now(UTC) - timedelta(minutes=1)
        data = event["data"]
        assert {key: data[key] for key in ("request_id", "model", "version", "role", "rows")} == {
            "request_id": "first",
            "model": "affine",
            "version": 2,
            "role": "stable",
            "rows": 2,
        }
        assert data["routing_key"] == "k1"
        assert data["trace_id"] is None
        assert "traceparent" not in event
        assert data["inputs"] == {f"f{i}": ROWS[:, i].tolist() for i in range(4)}
        assert data["outputs"]["total"] == pytest.approx(ROWS.sum(axis=1).tolist())
        np.testing.assert_allclose(data["outputs"]["y"], ROWS + 2)
        assert data["latency_seconds"] > 0

        for index in range(400):
            infer(client, f"many{index}")
        eventually(lambda: counter(client, "driftgate_inference_log_records", sink="redis") == 401)
        # `MAXLEN ~ 10` trims whole stream nodes (100 entries each by default): about 10.
        assert 10 <= stream.xlen("driftgate:inference-log") <= 110
        label = client.post(
            "/v1/feedback", json={"items": [{"id": "many399", "label": [1, 0]}]}, headers=LABELLER
        )
        assert label.status_code == 200
        eventually(lambda: counter(client, "driftgate_inference_log_records", sink="redis") == 402)
        ((_, fields),) = stream.xrevrange("driftgate:inference-log", count=1)
        assert fields[b"type"] == b"io.driftgate.label"
        assert json.loads(fields[b"event"])["data"]["labels"] == [1, 0]


def test_http_sink_posts_cloudevents_batches_retries_and_rejects(
    home: Path, receiver: Receiver
) -> None:
    settings = Settings(home=home, inference_log_url=receiver.url, **LOGGED)
    with TestClient(app=create_app(settings)) as client:
        receiver.statuses.extend([503, 500])  # twice unavailable, then taken
        infer(client, "retried")
        eventually(lambda: counter(client, "driftgate_inference_log_records", sink="http") == 1)
        assert [status for status, _, _ in receiver.posts] == [503, 500, 200]
        assert {kind for _, kind, _ in receiver.posts} == {"application/cloudevents-batch+json"}
        (event,) = receiver.events()
        assert (event["id"], event["type"]) == ("retried", "io.driftgate.inference")

        receiver.statuses.append(400)  # refused for good: dropped at once, counted
        infer(client, "refused")
        eventually(
            lambda: (
                counter(client, "driftgate_inference_log_dropped", sink="http", reason="rejected")
                == 1
            )
        )
        assert len(receiver.posts) == 4

        for index in range(300):  # more than one batch (256)
            infer(client, f"b{index}")
        eventually(lambda: counter(client, "driftgate_inference_log_records", sink="http") == 301)
        assert [event["id"] for event in receiver.events()[1:]] == [f"b{i}" for i in range(300)]


def test_a_sink_that_stops_answering_drops_and_counts_while_requests_stay_fast(
    home: Path, receiver: Receiver
) -> None:
    settings = Settings(
        home=home, inference_log_url=receiver.url, inference_log_queue_size=5, **LOGGED
    )
    receiver.gate.clear()  # the endpoint takes each POST and does not answer
    with TestClient(app=create_app(settings)) as client:
        slowest = 0.0
        for index in range(60):
            started = time.perf_counter()
            infer(client, f"d{index}")
            slowest = max(slowest, time.perf_counter() - started)
        # The sink holds one batch (at most 5) in a POST that does not return; 5 more wait.
        assert slowest < 1.0  # the calls never waited for the sink (it is held for 30 s)
        dropped = counter(
            client, "driftgate_inference_log_dropped", sink="http", reason="queue_full"
        )
        assert 60 - 2 * 5 <= dropped < 60
        receiver.gate.set()
        eventually(
            lambda: counter(client, "driftgate_inference_log_records", sink="http") + dropped == 60
        )
    # A POST that timed out while held may have been retried: ids are delivered at least once.
    assert len({event["id"] for event in receiver.events()}) == 60 - dropped


@pytest.mark.parametrize("mode", ["drop", "hash"])
def test_sensitive_features_leave_as_in_retraining_exports(
    sensitive_home: Path, receiver: Receiver, mode: str
) -> None:
    settings = Settings(
        home=sensitive_home,
        inference_log_parquet=True,
        inference_log_url=receiver.url,
        export_sensitive=mode,  # type: ignore[arg-type]
        export_hash_key=HASH_KEY,
        **LOGGED,
    )
    with TestClient(app=create_app(settings)) as client:
        infer(client, "private")
    (path,) = log_files(sensitive_home)
    frame = pl.read_parquet(path)
    (event,) = receiver.events()
    logged = event["data"]["inputs"]
    # What a retraining export writes for the same values (numbers as floats).
    expected: dict[str, Any] = {"f1": [float(value) for value in ROWS[:, 1]]}
    protect_sensitive(expected, ["f1"], mode, HASH_KEY)  # type: ignore[arg-type]
    if mode == "drop":
        assert "f1" not in frame.columns
        assert "f1" not in logged
    else:
        assert frame.get_column("f1").to_list() == expected["f1"] == logged["f1"]
        assert expected["f1"][0] == keyed_hash(HASH_KEY, -1.0)
    assert frame.get_column("f0").to_list() == logged["f0"] == ROWS[:, 0].tolist()


def test_records_carry_the_current_trace(home: Path) -> None:
    manifest = ModelRegistry(home / "models").manifest("affine", 1)
    span = trace.NonRecordingSpan(
        trace.SpanContext(
            trace_id=0x4BF92F3577B34DA6A3CE929D0E0E4736,
            span_id=0x00F067AA0BA902B7,
            is_remote=False,
            trace_flags=trace.TraceFlags(1),
        )
    )
    sink = ParquetSink(home / "log", roll_seconds=60, roll_bytes=1 << 20, privacy=Privacy())
    log = InferenceLog(LogConfig(rate=1.0), [sink], GatewayMetrics(CollectorRegistry()))

    async def record() -> None:
        await log.start()
        arrays = {"x": ROWS}
        with trace.use_span(span):
            log.offer(
                manifest,
                role="stable",
                request_id="traced",
                routing_key=None,
                inputs=arrays,
                outputs={"total": ROWS.sum(axis=1)},
                latency=0.001,
            )
        log.offer(
            manifest,
            role="stable",
            request_id="untraced",
            routing_key=None,
            inputs=arrays,
            outputs={"total": ROWS.sum(axis=1)},
            latency=0.001,
        )
        await log.close()

    asyncio.run(record())
    frame, _ = read_log(home / "log", "affine")
    traces = dict(zip(frame.get_column("request_id"), frame.get_column("trace_id"), strict=False))
    assert traces == {"traced": "4bf92f3577b34da6a3ce929d0e0e4736", "untraced": None}


@pytest.mark.e2e
@pytest.mark.timeout(90)
def test_log_export_joins_labels_on_a_real_gateway(home: Path) -> None:
    environ = {
        "DRIFTGATE_INFERENCE_LOG_RATE": "1",
        "DRIFTGATE_INFERENCE_LOG_PARQUET": "true",
        "DRIFTGATE_INFERENCE_LOG_ROLL_SECONDS": "0.3",
        "DRIFTGATE_INFERENCE_LOG_FLUSH_SECONDS": "0.05",
        "DRIFTGATE_SAMPLE_RATE": "0.2",  # labels of calls the monitor never saw join too
    }
    started = datetime.now(UTC)
    with running_gateway(home, **environ) as url, httpx.Client(base_url=url, timeout=10) as client:
        for index in range(20):
            infer(client, f"e{index}")
        infer(client, "other", path="/v2/models/affine/versions/1/infer")  # the rest: v2
        labels = [{"id": f"e{index}", "label": [index % 2, 1]} for index in range(10)]
        labels.append({"id": "e0", "label": [7, 7]})  # sent again, corrected: the last wins
        labels.append({"id": "e12", "label": [1, 2, 3]})  # wrong row count, if it joins
        response = client.post("/v1/feedback", json={"items": labels}, headers=LABELLER)
        assert response.status_code == 200, response.text

        def exported() -> bool:
            frame, _ = read_log(home / "inference-log", "affine")
            return frame.height == 42 and frame.get_column("label").null_count() == 22

        eventually(exported)
        output = home / "exports" / "dataset.parquet"
        command = [sys.executable, "-m", "gateway", "log", "export", "affine", "--home", str(home)]
        window = ["--since", started.isoformat(), "--until", datetime.now(UTC).isoformat()]
        result = subprocess.run(
            [*command, "--version", "2", *window, "-o", str(output)],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert result.returncode == 0, result.stderr
        assert "wrote 40 rows" in result.stdout
    dataset = pl.read_parquet(output)
    assert dataset.height == 40
    assert set(dataset.get_column("version")) == {2}
    assert not list(output.parent.glob(".*.tmp"))
    by_row = {
        (request, row): label
        for request, row, label in dataset.select("request_id", "row", "label").iter_rows()
    }
    assert by_row[("e0", 0)] == by_row[("e0", 1)] == "7"
    assert [by_row[(f"e{i}", 0)] for i in range(1, 10)] == [str(i % 2) for i in range(1, 10)]
    assert all(by_row[(f"e{i}", 1)] == "1" for i in range(1, 10))
    assert all(by_row[(f"e{i}", row)] is None for i in range(10, 20) for row in (0, 1))
    np.testing.assert_array_equal(
        dataset.filter(pl.col("request_id") == "e3").select("f0", "f1", "f2", "f3").to_numpy(), ROWS
    )

    everything = subprocess.run(
        [*command, "-o", str(home / "all.parquet")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert everything.returncode == 0, everything.stderr
    assert set(pl.read_parquet(home / "all.parquet").get_column("version")) == {1, 2}
    before = subprocess.run(
        [*command, "--until", "2000-01-01", "-o", str(home / "none.parquet")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert before.returncode == 1
    assert "no logged calls of affine" in before.stderr
    assert not (home / "none.parquet").exists()
