"""tritonclient against the gateway's gRPC service, unchanged: health, metadata, infer with
raw and typed contents (outputs compared with ONNX Runtime's own), and the gRPC calls
seen by everything REST calls are: canary and sticky routing, shadows, sampling, metrics,
batching and rollout gates.

KServe's gRPC client is not used: `kserve` would downgrade this environment's pandas (3 to
2) and bring a Kubernetes client and a model server with it.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import httpx
import numpy as np
import onnxruntime as ort
import pytest
import tritonclient.grpc as triton
from prometheus_client.parser import text_string_to_metric_families
from tritonclient.grpc import service_pb2_grpc
from tritonclient.utils import InferenceServerException

from registry import ModelRegistry
from tests import models
from tests.conftest import ADMIN_TOKEN
from tests.grpc.conftest import TYPED, Gateway, grpc_gateway
from tests.grpc.messages import outputs, raw_request, typed_request

pytestmark = pytest.mark.e2e
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
ROWS = {"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]}]}


@pytest.fixture(scope="module")
def gateway(module_home: Path, artifacts: Path) -> Iterator[Gateway]:
    """A gateway sampling every call, batching `lookup`, with affine versions 1 to 3."""
    registry = ModelRegistry(module_home / "models")
    registry.register(
        "affine", artifacts / "affine.onnx", artifacts / "affine.parquet", target="label"
    )
    with grpc_gateway(
        module_home,
        DRIFTGATE_SAMPLE_RATE="1.0",
        DRIFTGATE_DRIFT_PANE_SECONDS="1",  # a rollout's window starts at a pane's start
        DRIFTGATE_MODEL_BATCHING='{"lookup": {"max_batch_size": 16, "max_queue_delay_ms": 50}}',
    ) as running:
        yield running


@pytest.fixture(scope="module")
def client(gateway: Gateway) -> Iterator[Any]:
    """tritonclient's gRPC client, as a Triton user runs it."""
    with triton.InferenceServerClient(gateway.target) as connected:
        yield connected


@pytest.fixture(scope="module")
def stub(gateway: Gateway) -> Iterator[Any]:
    """tritonclient's generated stub, for what its client does not expose (metadata)."""
    with gateway.channel() as channel:
        yield service_pb2_grpc.GRPCInferenceServiceStub(channel)


def test_health_and_metadata(client: Any, gateway: Gateway) -> None:
    assert client.is_server_live()
    assert client.is_server_ready()
    assert client.is_model_ready("affine")
    assert client.is_model_ready("affine", "1")
    with pytest.raises(InferenceServerException) as unknown:
        client.is_model_ready("nope")
    assert unknown.value.status() == "StatusCode.NOT_FOUND"
    assert "'nope' is not registered" in unknown.value.message()

    server = client.get_server_metadata()
    rest = httpx.get(f"{gateway.url}/v2").json()
    assert (server.name, server.version, list(server.extensions)) == (
        rest["name"],
        rest["version"],
        rest["extensions"],
    )
    for version in ("", "1"):
        metadata = client.get_model_metadata("affine", version)
        path = "affine" + (f"/versions/{version}" if version else "")
        rest = httpx.get(f"{gateway.url}/v2/models/{path}").json()
        assert metadata.name == rest["name"]
        assert list(metadata.versions) == rest["versions"] == ["1", "2", "3"]
        assert metadata.platform == rest["platform"]
        for tensors, expected in (
            (metadata.inputs, rest["inputs"]),
            (metadata.outputs, rest["outputs"]),
        ):
            assert [
                {"name": t.name, "datatype": t.datatype, "shape": list(t.shape)} for t in tensors
            ] == expected


def test_grpc_health_service_for_probes(gateway: Gateway) -> None:
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    with gateway.channel() as channel:
        health = health_pb2_grpc.HealthStub(channel)
        for service in ("", "inference.GRPCInferenceService"):
            answer = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
            assert answer.status == health_pb2.HealthCheckResponse.SERVING
        with pytest.raises(grpc.RpcError) as unknown:
            health.Check(health_pb2.HealthCheckRequest(service="nothing"), timeout=5)
        assert unknown.value.code() == grpc.StatusCode.NOT_FOUND


def test_reflection_is_off_by_default(gateway: Gateway) -> None:
    from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
        ProtoReflectionDescriptorDatabase,
    )

    with gateway.channel() as channel, pytest.raises(grpc.RpcError) as off:
        ProtoReflectionDescriptorDatabase(channel).get_services()
    assert off.value.code() == grpc.StatusCode.UNIMPLEMENTED


def test_raw_infer_matches_onnxruntime(client: Any, artifacts: Path) -> None:
    x = np.random.default_rng(0).normal(size=(3, 4)).astype(np.float32)
    for version, artifact in (("1", "affine.onnx"), ("2", "affine_v2.onnx")):
        tensor = triton.InferInput("x", list(x.shape), "FP32")
        tensor.set_data_from_numpy(x)
        result = client.infer("affine", [tensor], model_version=version, request_id="r1")
        expected = ort.InferenceSession(artifacts / artifact).run(["y", "total"], {"x": x})
        np.testing.assert_array_equal(result.as_numpy("y"), expected[0])
        np.testing.assert_array_equal(result.as_numpy("total"), expected[1])
        response = result.get_response()
        assert (response.model_name, response.model_version, response.id) == (
            "affine",
            version,
            "r1",
        )
    # Every datatype REST takes, BYTES (length-prefixed) and FP16 included.
    inputs, feeds = [], {}
    for datatype in models.ALL_TYPES:
        array = _values(datatype)
        tensor = triton.InferInput(f"in_{datatype.lower()}", list(array.shape), datatype)
        tensor.set_data_from_numpy(array)
        inputs.append(tensor)
        feeds[tensor.name()] = array
    result = client.infer("identity", inputs)
    session = ort.InferenceSession(artifacts / "identity.onnx")
    names = [output.name for output in session.get_outputs()]
    for name, expected in zip(names, session.run(names, feeds), strict=True):
        got = result.as_numpy(name)
        if got.dtype == object:
            got = np.array([item.decode() for item in got], dtype=object)
        np.testing.assert_array_equal(got, expected)
        assert got.dtype == expected.dtype


def test_typed_contents_are_answered_typed(stub: Any, module_home: Path) -> None:
    arrays = {datatype: _values(datatype) for datatype in TYPED}
    inputs = [(f"in_{t.lower()}", arrays[t], t) for t in TYPED]
    session = ort.InferenceSession(module_home / "typed" / "model.onnx")
    names = [output.name for output in session.get_outputs()]
    expected = dict(zip(names, session.run(names, {n: a for n, a, _ in inputs}), strict=True))

    typed = stub.ModelInfer(typed_request("typed", inputs), timeout=10)
    assert not typed.raw_output_contents  # asked typed, answered typed
    raw = stub.ModelInfer(raw_request("typed", inputs), timeout=10)
    assert len(raw.raw_output_contents) == len(names)
    for response in (typed, raw):
        got = outputs(response)
        for name in names:
            np.testing.assert_array_equal(got[name], expected[name])

    chosen = typed_request("typed", inputs)
    chosen.outputs.add(name="out_int8")
    answer = stub.ModelInfer(chosen, timeout=10)
    assert [output.name for output in answer.outputs] == ["out_int8"]


def test_routing_shadows_sampling_and_metrics_see_grpc_calls(stub: Any, gateway: Gateway) -> None:
    policy = {
        "stable": 1,
        "canary": {"version": 2, "weight": 50},
        "shadows": [{"version": 3, "percent": 100}],
        "reason": "gRPC test",
    }
    set_policy = httpx.put(
        f"{gateway.url}/admin/models/affine/deployment", json=policy, headers=ADMIN
    )
    assert set_policy.status_code == 200, set_policy.text
    request = typed_request("affine", [("x", np.array([[1, 2, 3, 4]], np.float32), "FP32")])
    before = httpx.get(f"{gateway.url}/metrics").text

    by_key = {}
    for index in range(30):
        key = f"user-{index}"
        response, call = stub.ModelInfer.with_call(
            request, metadata=((("x-routing-key", key),)), timeout=10
        )
        trailing = dict(call.trailing_metadata())
        assert trailing["x-driftgate-version"] == response.model_version
        assert (
            trailing["x-driftgate-role"] == {"1": "stable", "2": "canary"}[response.model_version]
        )
        by_key[key] = response.model_version
    assert set(by_key.values()) == {"1", "2"}  # a split at 50%
    by_id = {}
    for index in range(30):
        request.id = f"request-{index}"
        by_id[request.id] = stub.ModelInfer(request, timeout=10).model_version
    request.id = ""

    # REST sends the same keys and ids to the same versions: one router for both.
    with httpx.Client(base_url=gateway.url, timeout=10) as rest:
        for key, version in by_key.items():
            answer = rest.post("/v2/models/affine/infer", json=ROWS, headers={"x-routing-key": key})
            assert answer.headers["x-driftgate-version"] == version
        for request_id, version in by_id.items():
            answer = rest.post("/v2/models/affine/infer", json={**ROWS, "id": request_id})
            assert answer.headers["x-driftgate-version"] == version

    text = httpx.get(f"{gateway.url}/metrics").text
    for name in ("driftgate_requests_total", "driftgate_request_duration_seconds_count"):
        calls = _total(text, name, model="affine")
        earlier = _total(before, name, model="affine")
        assert {protocol: calls[protocol] - earlier.get(protocol, 0) for protocol in calls} == {
            "grpc": 60,
            "rest": 60,
        }
    sampled = sum(
        _sum(text, name, model="affine") - _sum(before, name, model="affine")
        for name in ("driftgate_samples_total", "driftgate_samples_dropped_total")
    )
    assert sampled == 120  # a sample rate of 1: every call of either protocol
    deadline = time.monotonic() + 20
    while _sum(text, "driftgate_shadow_comparisons_total", model="affine", version="3") < 120:
        assert time.monotonic() < deadline, "the shadow did not see every call"
        time.sleep(0.2)
        text = httpx.get(f"{gateway.url}/metrics").text


def test_batching_sees_grpc_calls(stub: Any, gateway: Gateway) -> None:
    before = _histogram(httpx.get(f"{gateway.url}/metrics").text, "lookup")
    request = typed_request("lookup", [("index", np.array([1], np.int64), "INT64")])
    calls = [stub.ModelInfer.future(request, timeout=10) for _ in range(32)]
    for call in calls:
        assert list(outputs(call.result())["value"]) == [20.0]
    runs, rows = np.subtract(_histogram(httpx.get(f"{gateway.url}/metrics").text, "lookup"), before)
    assert rows == 32
    assert runs < 32  # some calls shared a run


def test_rollout_gates_count_grpc_calls(stub: Any, gateway: Gateway) -> None:
    reset = httpx.put(
        f"{gateway.url}/admin/models/affine/deployment",
        json={"stable": 1, "reason": "before the rollout"},
        headers=ADMIN,
    )
    assert reset.status_code == 200, reset.text
    config = {"steps": [50.0], "interval_seconds": 1.0, "min_samples": 5}
    started = httpx.post(
        f"{gateway.url}/admin/models/affine/rollout",
        json={"version": 2, "config": config, "reason": "gRPC traffic only"},
        headers=ADMIN,
    )
    assert started.status_code == 201, started.text
    request = typed_request("affine", [("x", np.array([[1, 2, 3, 4]], np.float32), "FP32")])
    deadline = time.monotonic() + 30
    while True:
        for index in range(20):
            stub.ModelInfer(request, metadata=(("x-routing-key", f"k{index}"),), timeout=10)
        state = httpx.get(f"{gateway.url}/admin/models/affine/rollout", headers=ADMIN).json()
        judged = [
            gate["evidence"]["calls"]
            for evaluation in state.get("history", [])
            for gate in evaluation["gates"]
            if gate["gate"] == "error_rate"
        ]
        if any(judged):  # the canary's gRPC calls, in an evaluation's window
            break
        assert time.monotonic() < deadline, state
        time.sleep(0.3)


def _values(datatype: str) -> np.ndarray:
    if datatype == "BYTES":
        return np.array(["ein", "zwei", ""], dtype=object)
    if datatype == "BOOL":
        return np.array([True, False, True])
    numpy_type = {"FP16": np.float16, "FP32": np.float32, "FP64": np.float64}.get(datatype)
    if numpy_type is not None:
        return np.array([1.5, -2.25, 3e3], dtype=numpy_type)
    info = np.iinfo(np.dtype(datatype.lower()))
    return np.array([info.min, 0, info.max], dtype=np.dtype(datatype.lower()))


def _samples(text: str, name: str, **labels: str) -> Iterator[tuple[dict[str, str], float]]:
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and labels.items() <= sample.labels.items():
                yield sample.labels, sample.value


def _total(text: str, name: str, **labels: str) -> dict[str, float]:
    """`name`'s samples matching `labels`, summed by protocol."""
    totals: dict[str, float] = {}
    for found, value in _samples(text, name, **labels):
        totals[found["protocol"]] = totals.get(found["protocol"], 0) + value
    return totals


def _sum(text: str, name: str, **labels: str) -> float:
    return sum(value for _, value in _samples(text, name, **labels))


def _histogram(text: str, model: str) -> tuple[float, float]:
    """ONNX Runtime runs and rows of `model` so far."""
    runs = _sum(text, "driftgate_batch_size_rows_count", model=model)
    return runs, _sum(text, "driftgate_batch_size_rows_sum", model=model)
