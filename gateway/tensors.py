"""Turning OIP tensors into numpy arrays and back, JSON and binary (Triton's extension).

Binary tensor data: the body is a JSON header of `Inference-Header-Content-Length` bytes
followed by the raw tensors, in the order of the inputs (or outputs) that carry a
`binary_data_size` parameter. Fixed-size types are little-endian, row-major; each BYTES
element is a 4-byte little-endian length followed by its bytes.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Mapping, Sequence
from typing import Any

import msgspec
import numpy as np

from gateway.content import json_errors
from gateway.errors import BadRequestError
from gateway.protocol import InferenceRequest, InferenceResponse, RequestInput, ResponseOutput
from registry import Signature, TensorSpec
from registry.datatypes import OIP_TO_NUMPY

_REQUEST_DECODER = msgspec.json.Decoder(InferenceRequest)
_INVALID = "invalid inference request"
_RESPONSE_ENCODER = msgspec.json.Encoder()
_LENGTH = struct.Struct("<I")


def decode_request(body: bytes, header_length: int | None) -> tuple[InferenceRequest, memoryview]:
    """Split a body into its decoded JSON request and the binary section after it."""
    header: bytes | memoryview = body
    binary = memoryview(b"")
    if header_length is not None:
        if not 0 < header_length <= len(body):
            raise BadRequestError(
                f"Inference-Header-Content-Length is {header_length} but the body has "
                f"{len(body)} bytes"
            )
        view = memoryview(body)
        header, binary = view[:header_length], view[header_length:]
    try:
        with json_errors("the inference request"):
            return _REQUEST_DECODER.decode(header), binary
    except msgspec.ValidationError as exc:
        raise BadRequestError(f"{_INVALID}: {exc}") from exc
    except msgspec.DecodeError as exc:
        raise BadRequestError(f"malformed JSON in inference request: {exc}") from exc


def convert_request(fields: Mapping[str, Any]) -> InferenceRequest:
    """A request another protocol decoded into Python objects (the JSON's own shape: gRPC's
    messages), validated as a JSON request is, with the same errors."""
    try:
        return msgspec.convert(fields, InferenceRequest)
    except msgspec.ValidationError as exc:
        raise BadRequestError(f"{_INVALID}: {exc}") from exc


def input_arrays(
    request: InferenceRequest, binary: memoryview, signature: Signature
) -> dict[str, np.ndarray]:
    """Every input of the request as an array checked against the model's signature."""
    arrays: dict[str, np.ndarray] = {}
    offset = 0
    for tensor in request.inputs:
        spec = signature.input(tensor.name)
        if spec is None:
            expected = ", ".join(repr(s.name) for s in signature.inputs)
            raise BadRequestError(f"unknown input {tensor.name!r}; the model takes {expected}")
        if tensor.name in arrays:
            raise BadRequestError(f"input {tensor.name!r} is given twice")
        _check_header(tensor, spec)
        size = binary_data_size(tensor.parameters, f"input {tensor.name!r}")
        if size is None:
            arrays[tensor.name] = _from_json(tensor)
            continue
        if offset + size > len(binary):
            raise BadRequestError(
                f"input {tensor.name!r} declares {size} bytes of binary data but only "
                f"{len(binary) - offset} remain in the body"
            )
        arrays[tensor.name] = _from_binary(tensor, binary[offset : offset + size])
        offset += size
    if offset != len(binary):
        raise BadRequestError(
            f"the body has {len(binary)} bytes of binary data but the inputs declare {offset}"
        )
    missing = [spec.name for spec in signature.inputs if spec.name not in arrays]
    if missing:
        raise BadRequestError(f"missing input(s): {', '.join(map(repr, missing))}")
    return arrays


def binary_data_size(parameters: Mapping[str, Any] | None, where: str) -> int | None:
    """The `binary_data_size` parameter, validated, or None when the data is JSON."""
    if not parameters or "binary_data_size" not in parameters:
        return None
    size = parameters["binary_data_size"]
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise BadRequestError(f"{where}: binary_data_size must be a non-negative integer")
    return size


def _check_header(tensor: RequestInput, spec: TensorSpec) -> None:
    if tensor.datatype != spec.datatype:
        raise BadRequestError(
            f"input {tensor.name!r} has datatype {tensor.datatype} but the model expects "
            f"{spec.datatype}"
        )
    shape = tensor.shape
    if len(shape) != len(spec.shape) or any(
        want not in (-1, got) for want, got in zip(spec.shape, shape, strict=True)
    ):
        raise BadRequestError(
            f"input {tensor.name!r} has shape {shape} but the model expects "
            f"{list(spec.shape)} (-1 is any size)"
        )


def _from_json(tensor: RequestInput) -> np.ndarray:
    if tensor.data is None:
        raise BadRequestError(f"input {tensor.name!r} has neither data nor binary_data_size")
    if not isinstance(tensor.data, list):
        raise BadRequestError(f"input {tensor.name!r}: data must be a JSON array")
    dtype = OIP_TO_NUMPY[tensor.datatype]
    try:
        array = _json_array(tensor, dtype)
    except (ValueError, TypeError, OverflowError) as exc:
        raise BadRequestError(
            f"input {tensor.name!r}: data is not a regular array of {tensor.datatype}: {exc}"
        ) from exc
    expected = math.prod(tensor.shape)
    if array.size != expected:
        raise BadRequestError(
            f"input {tensor.name!r}: shape {tensor.shape} needs {expected} elements but data "
            f"has {array.size}"
        )
    if tensor.datatype == "BYTES" and not all(isinstance(item, str) for item in array.flat):
        raise BadRequestError(f"input {tensor.name!r}: BYTES data must be strings")
    return array.reshape(tensor.shape)


def _json_array(tensor: RequestInput, dtype: np.dtype[Any]) -> np.ndarray:
    """JSON numbers as `dtype`, refusing what the cast would change silently: a number past
    a narrower float's range (1e6 as FP16 is inf), and a fraction or an out-of-range number
    as an integer (1.5 as INT8 is 1). Checked only where the data is not already of the
    target type (JSON numbers are float64 or int64), with whole-array operations."""
    data = tensor.data
    if dtype.kind == "f" and dtype.itemsize < 8:
        try:
            with np.errstate(over="raise"):
                return np.array(data, dtype=dtype)
        except FloatingPointError as exc:
            raise BadRequestError(_out_of_range(tensor, dtype)) from exc
    if dtype.kind not in "iu":
        return np.array(data, dtype=dtype)  # FP64, BOOL, BYTES
    natural = np.array(data)  # int64 (uint64 past it) if every number is whole, else float64
    if natural.dtype == dtype:
        return natural
    if natural.dtype.kind not in "iuf" or not natural.size:
        return np.array(data, dtype=dtype)  # numpy refuses Python integers out of range
    if natural.dtype.kind == "f" and not (whole := natural == np.trunc(natural)).all():
        raise BadRequestError(
            f"input {tensor.name!r}: {tensor.datatype} takes whole numbers, not "
            f"{natural[~whole].flat[0].item()!r}; round the data before sending it"
        )
    info = np.iinfo(dtype)
    if natural.dtype.kind == "f":
        # float64 is exact only to 2**53, and numpy makes it of whole numbers that fit
        # neither int64 nor uint64 together (0 and 2**64 - 1): bound the numbers as sent.
        natural = np.array(data, dtype=object)
    if natural.min() < info.min or natural.max() > info.max:
        raise BadRequestError(_out_of_range(tensor, dtype))
    return natural.astype(dtype)


def _out_of_range(tensor: RequestInput, dtype: np.dtype[Any]) -> str:
    if dtype.kind == "f":
        bounds = f"{np.finfo(dtype).min:g} to {np.finfo(dtype).max:g}"
    else:
        bounds = f"{np.iinfo(dtype).min} to {np.iinfo(dtype).max}"
    return (
        f"input {tensor.name!r}: a value is out of the range of {tensor.datatype} ({bounds}); "
        "scale the data, or use a model that takes a wider type"
    )


def _from_binary(tensor: RequestInput, chunk: memoryview) -> np.ndarray:
    count = math.prod(tensor.shape)
    if tensor.datatype == "BYTES":
        return np.array(_split_bytes(tensor.name, chunk, count), dtype=object).reshape(tensor.shape)
    dtype = OIP_TO_NUMPY[tensor.datatype].newbyteorder("<")
    if len(chunk) != count * dtype.itemsize:
        raise BadRequestError(
            f"input {tensor.name!r}: shape {tensor.shape} of {tensor.datatype} needs "
            f"{count * dtype.itemsize} bytes but binary_data_size is {len(chunk)}"
        )
    return np.frombuffer(chunk, dtype=dtype).reshape(tensor.shape)


def _split_bytes(name: str, chunk: memoryview, count: int) -> list[str]:
    items: list[str] = []
    offset = 0
    while offset < len(chunk):
        if offset + 4 > len(chunk):
            raise BadRequestError(f"input {name!r}: truncated BYTES element length")
        (length,) = _LENGTH.unpack_from(chunk, offset)
        offset += 4
        if offset + length > len(chunk):
            raise BadRequestError(f"input {name!r}: truncated BYTES element")
        try:
            items.append(str(chunk[offset : offset + length], "utf-8"))
        except UnicodeDecodeError as exc:
            raise BadRequestError(f"input {name!r}: BYTES element is not UTF-8") from exc
        offset += length
    if len(items) != count:
        raise BadRequestError(
            f"input {name!r}: shape needs {count} BYTES elements but binary data has {len(items)}"
        )
    return items


def requested_outputs(request: InferenceRequest, signature: Signature) -> list[tuple[str, bool]]:
    """(name, as binary) of every output to return, in the order asked for."""
    default_binary = bool((request.parameters or {}).get("binary_data_output", False))
    if not request.outputs:
        return [(spec.name, default_binary) for spec in signature.outputs]
    chosen = []
    for output in request.outputs:
        if signature.output(output.name) is None:
            expected = ", ".join(repr(s.name) for s in signature.outputs)
            raise BadRequestError(f"unknown output {output.name!r}; the model gives {expected}")
        binary = (output.parameters or {}).get("binary_data", default_binary)
        chosen.append((output.name, bool(binary)))
    return chosen


def encode_response(
    *,
    model_name: str,
    model_version: int,
    request_id: str | None,
    outputs: Sequence[tuple[TensorSpec, np.ndarray, bool]],
) -> tuple[bytes, int | None]:
    """Encode (spec, array, as binary) outputs; returns the body and, when any output is
    binary, the length of its JSON header (the `Inference-Header-Content-Length`)."""
    sections: list[bytes] = []
    encoded: list[ResponseOutput] = []
    for spec, array, as_binary in outputs:
        output = ResponseOutput(name=spec.name, datatype=spec.datatype, shape=list(array.shape))
        if as_binary:
            raw = tensor_bytes(array, spec.datatype)
            output.parameters = {"binary_data_size": len(raw)}
            sections.append(raw)
        else:
            output.data = _to_json(array, spec.datatype)
        encoded.append(output)
    response = InferenceResponse(
        model_name=model_name, model_version=str(model_version), id=request_id, outputs=encoded
    )
    header = _RESPONSE_ENCODER.encode(response)
    if not sections:
        return header, None
    return b"".join([header, *sections]), len(header)


def _to_json(array: np.ndarray, datatype: str) -> list[Any]:
    flat = array.reshape(-1)
    if datatype == "BYTES":
        return [
            item.decode("utf-8", "replace") if isinstance(item, bytes) else str(item)
            for item in flat
        ]
    values: list[Any] = flat.tolist()
    return values


def tensor_bytes(array: np.ndarray, datatype: str) -> bytes:
    """An output's binary form: little-endian, row-major; BYTES elements length-prefixed."""
    if datatype == "BYTES":
        parts = []
        for item in array.reshape(-1):
            raw = item if isinstance(item, bytes) else str(item).encode("utf-8")
            parts.append(_LENGTH.pack(len(raw)))
            parts.append(raw)
        return b"".join(parts)
    dtype = OIP_TO_NUMPY[datatype].newbyteorder("<")
    return np.ascontiguousarray(array, dtype=dtype).tobytes()
