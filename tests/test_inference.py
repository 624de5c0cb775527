"""Open Inference Protocol over the real app: health, metadata and inference."""

from __future__ import annotations

import gzip
import zlib
from typing import Any

import numpy as np
import pytest
from litestar.testing import TestClient

from tests.oip import binary_body, json_input, split_binary_response

Client = TestClient[Any]
ROWS = np.array([[0.5, -1.0, 2.0, 3.5], [1.0, 1.0, 1.0, 1.0]], dtype=np.float32)


def test_health_and_server_metadata(client: Client) -> None:
    assert client.get("/v2/health/live").json() == {"live": True}
    assert client.get("/v2/health/ready").json() == {"ready": True}
    metadata = client.get("/v2").json()
    assert metadata["name"] == "driftgate"
    assert "binary_tensor_data" in metadata["extensions"]


def test_model_metadata_and_readiness(client: Client) -> None:
    metadata = client.get("/v2/models/affine").json()
    assert metadata == {
        "name": "affine",
        "versions": ["1", "2"],
        "platform": "onnx_onnxv1",
        "inputs": [{"name": "x", "datatype": "FP32", "shape": [-1, 4]}],
        "outputs": [
            {"name": "y", "datatype": "FP32", "shape": [-1, 4]},
            {"name": "total", "datatype": "FP32", "shape": [-1]},
        ],
    }
    assert client.get("/v2/models/affine/versions/1").json()["name"] == "affine"
    assert client.get("/v2/models/affine/ready").json() == {"name": "affine", "ready": True}
    assert client.get("/v2/models/affine/versions/1/ready").status_code == 200


def test_json_inference_uses_the_stable_version_and_echoes_the_id(client: Client) -> None:
    response = client.post(
        "/v2/models/affine/infer", json={"id": "req-1", "inputs": [json_input("x", ROWS, "FP32")]}
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["id"], body["model_name"], body["model_version"]) == ("req-1", "affine", "2")
    assert response.headers["x-driftgate-version"] == "2"
    outputs = {output["name"]: output for output in body["outputs"]}
    assert outputs["y"]["shape"] == [2, 4]
    np.testing.assert_allclose(np.reshape(outputs["y"]["data"], (2, 4)), ROWS + 2.0)
    np.testing.assert_allclose(outputs["total"]["data"], ROWS.sum(axis=1), rtol=1e-6)


def test_explicit_version_and_nested_data(client: Client) -> None:
    request = {
        "inputs": [{"name": "x", "shape": [2, 4], "datatype": "FP32", "data": ROWS.tolist()}],
        "outputs": [{"name": "y"}],
    }
    body = client.post("/v2/models/affine/versions/1/infer", json=request).json()
    assert body["model_version"] == "1"
    assert [output["name"] for output in body["outputs"]] == ["y"]
    np.testing.assert_allclose(np.reshape(body["outputs"][0]["data"], (2, 4)), ROWS + 1.0)


def test_binary_request_and_binary_response(client: Client) -> None:
    body, headers = binary_body(
        [("x", ROWS, "FP32")],
        id="b1",
        outputs=[{"name": "total", "parameters": {"binary_data": True}}, {"name": "y"}],
    )
    response = client.post("/v2/models/affine/infer", content=body, headers=headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/octet-stream"
    header, raw = split_binary_response(
        response.content, int(response.headers["inference-header-content-length"])
    )
    total, y = header["outputs"]
    assert total["parameters"] == {"binary_data_size": 8}
    np.testing.assert_allclose(np.frombuffer(raw, dtype="<f4"), ROWS.sum(axis=1), rtol=1e-6)
    np.testing.assert_allclose(np.reshape(y["data"], (2, 4)), ROWS + 2.0)


def test_binary_data_output_parameter_makes_every_output_binary(client: Client) -> None:
    body, headers = binary_body([("x", ROWS, "FP32")], parameters={"binary_data_output": True})
    response = client.post("/v2/models/affine/infer", content=body, headers=headers)
    header, raw = split_binary_response(
        response.content, int(response.headers["inference-header-content-length"])
    )
    assert [output["parameters"]["binary_data_size"] for output in header["outputs"]] == [32, 8]
    np.testing.assert_allclose(np.frombuffer(raw[:32], dtype="<f4").reshape(2, 4), ROWS + 2.0)


@pytest.mark.parametrize("encoding", ["gzip", "deflate", "raw-deflate"])
def test_compressed_bodies(client: Client, encoding: str) -> None:
    body, headers = binary_body([("x", ROWS, "FP32")])
    if encoding == "gzip":
        compressed = gzip.compress(body)
    elif encoding == "deflate":
        compressed = zlib.compress(body)
    else:
        deflater = zlib.compressobj(wbits=-zlib.MAX_WBITS)
        compressed = deflater.compress(body) + deflater.flush()
    headers["Content-Encoding"] = encoding.removeprefix("raw-")
    response = client.post("/v2/models/affine/infer", content=compressed, headers=headers)
    assert response.status_code == 200, response.text
    np.testing.assert_allclose(response.json()["outputs"][1]["data"], ROWS.sum(axis=1), rtol=1e-6)


def _typed_arrays() -> dict[str, tuple[np.ndarray, str]]:
    arrays: dict[str, tuple[np.ndarray, str]] = {
        "bool": (np.array([True, False, True]), "BOOL"),
        "bytes": (np.array(["alpha", "", "ü-tf8"], dtype=object), "BYTES"),
        "fp16": (np.array([0.5, -1.25, 3.0], dtype=np.float16), "FP16"),
        "fp32": (np.array([0.1, -2.5, 1e6], dtype=np.float32), "FP32"),
        "fp64": (np.array([0.1, -2.5, 1e300], dtype=np.float64), "FP64"),
    }
    for bits in (8, 16, 32, 64):
        arrays[f"int{bits}"] = (np.array([-3, 0, 7], dtype=f"int{bits}"), f"INT{bits}")
        arrays[f"uint{bits}"] = (np.array([0, 1, 200], dtype=f"uint{bits}"), f"UINT{bits}")
    return arrays


@pytest.mark.parametrize("binary", [False, True], ids=["json", "binary"])
def test_every_datatype_round_trips(client: Client, binary: bool) -> None:
    arrays = _typed_arrays()
    if binary:
        body, headers = binary_body(
            [(f"in_{name}", array, datatype) for name, (array, datatype) in arrays.items()],
            parameters={"binary_data_output": True},
        )
        response = client.post("/v2/models/identity/infer", content=body, headers=headers)
        header, raw = split_binary_response(
            response.content, int(response.headers["inference-header-content-length"])
        )
    else:
        inputs = [
            json_input(f"in_{name}", array, datatype) for name, (array, datatype) in arrays.items()
        ]
        response = client.post("/v2/models/identity/infer", json={"inputs": inputs})
        header, raw = response.json(), b""
    assert response.status_code == 200, response.text
    offset = 0
    for output in header["outputs"]:
        array, datatype = arrays[output["name"].removeprefix("out_")]
        assert (output["datatype"], output["shape"]) == (datatype, [3])
        if not binary:
            values = output["data"]
        elif datatype == "BYTES":
            size = output["parameters"]["binary_data_size"]
            values, chunk, offset = [], raw[offset : offset + size], offset + size
            while chunk:
                length = int.from_bytes(chunk[:4], "little")
                values.append(chunk[4 : 4 + length].decode())
                chunk = chunk[4 + length :]
        else:
            size = output["parameters"]["binary_data_size"]
            values = np.frombuffer(raw[offset : offset + size], array.dtype.newbyteorder("<"))
            offset += size
        assert list(values) == array.tolist(), datatype


def test_openapi_documents_every_route(client: Client) -> None:
    document = client.get("/docs/openapi.json").json()
    paths = document["paths"]
    for path in [
        "/v2/health/live",
        "/v2/health/ready",
        "/v2",
        "/v2/models/{name}",
        "/v2/models/{name}/versions/{version}/ready",
        "/v2/models/{name}/infer",
        "/v2/models/{name}/versions/{version}/infer",
        "/admin/models/{name}/deployment",
        "/admin/audit",
        "/admin/status",
        "/metrics",
        "/v1/models/{name}/versions/{version}/drift",
    ]:
        assert path in paths, path
    infer = paths["/v2/models/{name}/infer"]["post"]
    assert infer["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/InferenceRequest"
    }
    assert "InferenceRequest" in document["components"]["schemas"]
    assert client.post("/v2/models/affine/infer", json={}).status_code == 400
    assert client.get("/v2/models/affine/infer").status_code == 405
