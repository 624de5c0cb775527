"""gRPC twins of REST requests, built with tritonclient's own generated messages (not the
gateway's), and their answers read back as arrays."""

from __future__ import annotations

import json
import struct
from typing import Any

import numpy as np
from tritonclient.grpc import service_pb2

# The protocol's InferTensorContents field of each datatype, as the .proto documents it.
CONTENTS = {
    "BOOL": "bool_contents",
    "INT8": "int_contents",
    "INT16": "int_contents",
    "INT32": "int_contents",
    "INT64": "int64_contents",
    "UINT8": "uint_contents",
    "UINT16": "uint_contents",
    "UINT32": "uint_contents",
    "UINT64": "uint64_contents",
    "FP32": "fp32_contents",
    "FP64": "fp64_contents",
    "BYTES": "bytes_contents",
}
NUMPY = {
    "BOOL": np.bool_,
    "UINT8": np.uint8,
    "UINT16": np.uint16,
    "UINT32": np.uint32,
    "UINT64": np.uint64,
    "INT8": np.int8,
    "INT16": np.int16,
    "INT32": np.int32,
    "INT64": np.int64,
    "FP16": np.float16,
    "FP32": np.float32,
    "FP64": np.float64,
    "BYTES": np.object_,
}
INFER = "/inference.GRPCInferenceService/ModelInfer"


def split_path(path: str) -> tuple[str, str]:
    """A REST path's model and version (`affine/versions/2` -> affine, 2)."""
    name, _, version = path.partition("/versions/")
    return name, version


def from_json(path: str, body: dict[str, Any]) -> Any:
    """The gRPC twin of a REST JSON infer call: typed contents, the same fields."""
    name, version = split_path(path)
    message = service_pb2.ModelInferRequest(model_name=name, model_version=version)
    if "id" in body:
        message.id = body["id"]
    for tensor in body.get("inputs", []):
        entry = message.inputs.add(name=tensor["name"], datatype=tensor["datatype"])
        entry.shape.extend(tensor["shape"])
        if tensor.get("data") is not None:
            flat = np.asarray(tensor["data"], dtype=object).reshape(-1).tolist()
            field = CONTENTS.get(tensor["datatype"], "fp32_contents")
            if field == "bytes_contents":
                flat = [item.encode() for item in flat]
            getattr(entry.contents, field).extend(flat)
    for output in body.get("outputs") or []:
        message.outputs.add(name=output["name"])
    return message


def from_binary(path: str, body: bytes, header_length: int) -> Any:
    """The gRPC twin of a REST binary-extension call: each input's binary data as its
    raw_input_contents entry."""
    header = json.loads(body[:header_length])
    name, version = split_path(path)
    message = service_pb2.ModelInferRequest(model_name=name, model_version=version)
    offset = header_length
    for tensor in header["inputs"]:
        entry = message.inputs.add(name=tensor["name"], datatype=tensor["datatype"])
        entry.shape.extend(tensor["shape"])
        size = tensor["parameters"]["binary_data_size"]
        message.raw_input_contents.append(body[offset : offset + size])
        offset += size
    return message


def raw_request(model: str, inputs: list[tuple[str, np.ndarray, str]], **fields: Any) -> Any:
    """A request with every input as raw_input_contents (as tritonclient sends them)."""
    message = service_pb2.ModelInferRequest(model_name=model, **fields)
    for name, array, datatype in inputs:
        entry = message.inputs.add(name=name, datatype=datatype)
        entry.shape.extend(array.shape)
        message.raw_input_contents.append(raw_bytes(array, datatype))
    return message


def typed_request(model: str, inputs: list[tuple[str, np.ndarray, str]], **fields: Any) -> Any:
    """A request with every input as typed contents."""
    message = service_pb2.ModelInferRequest(model_name=model, **fields)
    for name, array, datatype in inputs:
        entry = message.inputs.add(name=name, datatype=datatype)
        entry.shape.extend(array.shape)
        flat = array.reshape(-1).tolist()
        if datatype == "BYTES":
            flat = [item.encode() for item in flat]
        getattr(entry.contents, CONTENTS[datatype]).extend(flat)
    return message


def raw_bytes(array: np.ndarray, datatype: str) -> bytes:
    """Triton's raw form: little-endian elements; BYTES as 4-byte lengths and bytes."""
    if datatype == "BYTES":
        parts = [str(item).encode() for item in array.reshape(-1)]
        return b"".join(struct.pack("<I", len(part)) + part for part in parts)
    return np.ascontiguousarray(array, dtype=np.dtype(NUMPY[datatype]).newbyteorder("<")).tobytes()


def outputs(response: Any) -> dict[str, np.ndarray]:
    """Every output of a ModelInferResponse as an array, raw or typed."""
    arrays = {}
    for index, tensor in enumerate(response.outputs):
        shape = list(tensor.shape)
        if response.raw_output_contents:
            arrays[tensor.name] = _from_raw(response.raw_output_contents[index], tensor.datatype)
        else:
            values = list(getattr(tensor.contents, CONTENTS[tensor.datatype]))
            if tensor.datatype == "BYTES":
                values = [value.decode() for value in values]
            arrays[tensor.name] = np.array(values, dtype=NUMPY[tensor.datatype])
        arrays[tensor.name] = arrays[tensor.name].reshape(shape)
    return arrays


def _from_raw(raw: bytes, datatype: str) -> np.ndarray:
    if datatype != "BYTES":
        return np.frombuffer(raw, dtype=np.dtype(NUMPY[datatype]).newbyteorder("<"))
    items, offset = [], 0
    while offset < len(raw):
        (length,) = struct.unpack_from("<I", raw, offset)
        items.append(raw[offset + 4 : offset + 4 + length].decode())
        offset += 4 + length
    return np.array(items, dtype=object)


def rest_outputs(body: dict[str, Any]) -> dict[str, np.ndarray]:
    """Every output of a REST JSON response as an array."""
    return {
        output["name"]: np.array(output["data"], dtype=NUMPY[output["datatype"]]).reshape(
            output["shape"]
        )
        for output in body["outputs"]
    }
