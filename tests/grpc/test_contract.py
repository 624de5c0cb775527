"""REST and gRPC answer one corpus of good and bad requests alike, call for call.

The corpus is REST's own (tests/test_bad_input.py, tests/oip.py) with each request's gRPC
twin: a JSON body becomes typed contents, a binary-extension body raw_input_contents. Good
requests must give equal outputs (and the same version); bad ones the same class of error
(400 INVALID_ARGUMENT, 404 NOT_FOUND, 413 RESOURCE_EXHAUSTED, 500 INTERNAL, 503 UNAVAILABLE)
with the same message, which over gRPC may add what REST's wording means there.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import httpx
import numpy as np
import pytest
from tritonclient.grpc import service_pb2, service_pb2_grpc

from registry import ModelRegistry
from tests.grpc.conftest import Gateway, grpc_gateway
from tests.grpc.messages import INFER, from_binary, from_json, outputs, rest_outputs
from tests.oip import binary_body, json_input
from tests.test_bad_input import GOOD, JSON_CASES, RAW_CASES

pytestmark = pytest.mark.e2e
LIMIT = 1 << 20
GRPC_CODE = {
    400: grpc.StatusCode.INVALID_ARGUMENT,
    404: grpc.StatusCode.NOT_FOUND,
    413: grpc.StatusCode.RESOURCE_EXHAUSTED,
    500: grpc.StatusCode.INTERNAL,
    503: grpc.StatusCode.UNAVAILABLE,
}
# REST cases with no gRPC twin: the protocol cannot say them (typed contents are flat
# arrays of one type; int64 holds no 2**70; binary sizes are the entries' own lengths).
REST_ONLY = {
    "path trick": "an HTTP path's escaping, before any model name",
    "ragged data": "contents are flat",
    "strings as floats": "contents are typed",
    "data not an array": "contents are arrays",
    "missing inputs": "`inputs` is a repeated field: absent is empty",
    "overflowing integer": "int64_contents holds no 2**70",
    "bad binary size": "raw_input_contents entries have their own length",
    "truncated binary": "as above",
    "trailing binary bytes": "as above",
}


@dataclass(frozen=True)
class Case:
    """One call over both protocols."""

    name: str
    path: str
    body: bytes
    headers: dict[str, str]
    message: Any


def _json_case(name: str, path: str, body: Any) -> Case:
    content = json.dumps(body).encode()
    return Case(name, path, content, {"content-type": "application/json"}, from_json(path, body))


def _binary_case(name: str, path: str, body: bytes, headers: dict[str, str]) -> Case:
    length = int(headers["Inference-Header-Content-Length"])
    return Case(name, path, body, headers, from_binary(path, body, length))


def _all_types() -> list[tuple[str, np.ndarray, str]]:
    return [
        ("in_bool", np.array([True, False]), "BOOL"),
        *(
            (f"in_{kind}", np.array([np.iinfo(kind).min, np.iinfo(kind).max], kind), kind.upper())
            for kind in ("uint8", "uint16", "uint32", "uint64", "int8", "int16", "int32", "int64")
        ),
        ("in_fp16", np.array([1.5, -65504], np.float16), "FP16"),
        ("in_fp32", np.array([1.5, 3e38], np.float32), "FP32"),
        ("in_fp64", np.array([1.5, 1e300], np.float64), "FP64"),
        ("in_bytes", np.array(["grüße", ""], dtype=object), "BYTES"),
    ]


def corpus() -> list[Case]:
    """Every case with a twin: REST's bad-input corpus, then good calls of every kind."""
    cases = [
        _json_case(name, *request) for name, request, _, _ in JSON_CASES if name not in REST_ONLY
    ]
    cases += [
        _binary_case(name, "identity" if b"in_bytes" in body else "affine", body, headers)
        for name, body, headers, _, _ in RAW_CASES
        if "Inference-Header-Content-Length" in headers
        and name not in REST_ONLY
        and not name.startswith("header length")
    ]
    typed = [(name, array, kind) for name, array, kind in _all_types() if kind != "FP16"]
    cases += [
        _json_case("good", "affine", GOOD),
        _json_case("good, version 1, an id", "affine/versions/1", {**GOOD, "id": "r-1"}),
        _json_case("one output", "affine", {**GOOD, "outputs": [{"name": "total"}]}),
        _json_case(
            "every typed datatype, extremes",
            "typed",
            {"inputs": [json_input(name, array, kind) for name, array, kind in typed]},
        ),
        _binary_case("every datatype, binary", "identity", *binary_body(_all_types())),
        _json_case(
            "a failure inside the model",
            "lookup",
            {"inputs": [{"name": "index", "shape": [1], "datatype": "INT64", "data": [7]}]},
        ),
        _json_case(
            "a number out of INT8's range",
            "typed",
            {
                "inputs": [
                    json_input(name, array, kind)
                    if kind != "INT8"
                    else {"name": name, "shape": [2], "datatype": "INT8", "data": [1, 300]}
                    for name, array, kind in typed
                ]
            },
        ),
        _json_case("a tampered artifact", "fragile/versions/1", GOOD),
    ]
    return cases


CASES = corpus()


@pytest.fixture(scope="module")
def gateway(module_home: Path, artifacts: Path) -> Iterator[Gateway]:
    """A gateway with a 1 MiB request limit and `fragile`, whose version 1 is tampered with
    before it is ever loaded."""
    registry = ModelRegistry(module_home / "models")
    for artifact in ("affine.onnx", "affine_v2.onnx"):
        registry.register(
            "fragile", artifacts / artifact, artifacts / "affine.parquet", target="label"
        )
    artifact = module_home / "models" / "fragile" / "1" / "model.onnx"
    artifact.chmod(0o644)
    artifact.write_bytes(artifact.read_bytes().replace(b"offset", b"offsex"))
    with grpc_gateway(module_home, DRIFTGATE_MAX_REQUEST_BYTES=str(LIMIT)) as running:
        yield running


@pytest.fixture(scope="module")
def stub(gateway: Gateway) -> Iterator[Any]:
    """tritonclient's generated stub."""
    with gateway.channel() as channel:
        yield service_pb2_grpc.GRPCInferenceServiceStub(channel)


@pytest.fixture(scope="module")
def rest(gateway: Gateway) -> Iterator[httpx.Client]:
    """An HTTP client of the same gateway."""
    with httpx.Client(base_url=gateway.url, timeout=30) as client:
        yield client


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_rest_and_grpc_agree(case: Case, rest: httpx.Client, stub: Any) -> None:
    answer = rest.post(f"/v2/models/{case.path}/infer", content=case.body, headers=case.headers)
    response, call, refused = _call(stub.ModelInfer, case.message)
    if refused is not None:
        assert answer.status_code != 200, f"REST served it, gRPC said {refused.details()}"
        assert refused.code() == GRPC_CODE[answer.status_code], refused.details()
        assert answer.json()["error"] in refused.details()
        return
    assert answer.status_code == 200, f"gRPC served it, REST said {answer.text}"
    assert response.model_version == answer.headers["x-driftgate-version"]
    assert dict(call.trailing_metadata())["x-driftgate-role"] == answer.headers["x-driftgate-role"]
    expected = rest_outputs(answer.json())
    got = outputs(response)
    assert list(got) == list(expected)
    for name, array in expected.items():
        np.testing.assert_array_equal(got[name], array)
        assert got[name].dtype == array.dtype


def test_the_size_limit_is_the_same(rest: httpx.Client, stub: Any) -> None:
    rows = np.zeros((100_000, 4), dtype=np.float32)
    body = json.dumps({"inputs": [json_input("x", rows, "FP32")]}).encode()
    answer = rest.post("/v2/models/affine/infer", content=body)
    message = service_pb2.ModelInferRequest(model_name="affine")
    message.inputs.add(name="x", datatype="FP32", shape=rows.shape)
    message.raw_input_contents.append(rows.tobytes())
    with pytest.raises(grpc.RpcError) as refused:
        stub.ModelInfer(message, timeout=30)
    assert answer.status_code == 413
    assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    # gRPC refuses it before any of it is read, in its own words; both name the limit.
    assert str(LIMIT) in answer.json()["error"]
    assert str(LIMIT) in refused.value.details()


def test_readiness_agrees(rest: httpx.Client, stub: Any) -> None:
    for name, version in (("affine", ""), ("affine", "1"), ("fragile", "1"), ("nope", "")):
        path = name + (f"/versions/{version}" if version else "")
        answer = rest.get(f"/v2/models/{path}/ready")
        request = service_pb2.ModelReadyRequest(name=name, version=version)
        ready, call, refused = _call(stub.ModelReady, request)
        if refused is not None:
            assert refused.code() == GRPC_CODE[answer.status_code]
            assert answer.json()["error"] in refused.details()
            continue
        assert ready.ready == answer.json()["ready"] == (answer.status_code == 200)
        reason = dict(call.trailing_metadata()).get("x-driftgate-error")
        assert reason == answer.json().get("error")
    live = stub.ServerLive(service_pb2.ServerLiveRequest(), timeout=30)
    assert live.live == rest.get("/v2/health/live").json()["live"]
    ready = stub.ServerReady(service_pb2.ServerReadyRequest(), timeout=30)
    assert ready.ready == rest.get("/v2/health/ready").json()["ready"]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            lambda m: m.raw_input_contents.append(b"\x00" * 16),
            "raw_input_contents has 2 entries but the request has 1 inputs",
        ),
        (
            lambda m: m.inputs[0].contents.fp32_contents.extend([1, 2, 3, 4]),
            "input 'x' has contents but the request sends raw_input_contents",
        ),
    ],
    ids=["an entry too many", "raw and typed"],
)
def test_framing_only_grpc_has(stub: Any, change: Any, message: str) -> None:
    request = service_pb2.ModelInferRequest(model_name="affine")
    request.inputs.add(name="x", datatype="FP32", shape=[1, 4])
    request.raw_input_contents.append(np.ones(4, "<f4").tobytes())
    change(request)
    with pytest.raises(grpc.RpcError) as refused:
        stub.ModelInfer(request, timeout=30)
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert message in refused.value.details()


def test_typed_contents_in_the_wrong_field(stub: Any) -> None:
    wrong = from_json("affine", GOOD)
    wrong.inputs[0].contents.Clear()
    wrong.inputs[0].contents.fp64_contents.extend([1, 2, 3, 4])
    fp16 = from_json("affine", GOOD)
    fp16.inputs[0].datatype = "FP16"
    for request, message in (
        (wrong, "is FP32: its data goes in contents.fp32_contents, not contents.fp64_contents"),
        (fp16, "input 'x' is FP16, which has no contents field; send it in raw_input_contents"),
    ):
        with pytest.raises(grpc.RpcError) as refused:
            stub.ModelInfer(request, timeout=30)
        assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert message in refused.value.details()


def test_a_message_that_does_not_parse(gateway: Gateway) -> None:
    with gateway.channel() as channel:
        call = channel.unary_unary(INFER)  # bytes as they are: no serializer
        with pytest.raises(grpc.RpcError) as refused:
            call(b"\xff\xff\xff garbage", timeout=30)
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "not a valid inference.ModelInferRequest" in refused.value.details()


def _call(method: Any, request: Any) -> tuple[Any, Any, Any]:
    """(response, call, None) of a unary call, or (None, None, the error) when refused."""
    try:
        response, call = method.with_call(request, timeout=30)
    except grpc.RpcError as refused:
        return None, None, refused
    return response, call, None
