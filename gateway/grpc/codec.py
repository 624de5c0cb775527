"""gRPC's framing of tensors: `ModelInferRequest` in, `ModelInferResponse` bytes out.

A message is turned into the request the REST path decodes from JSON, and checked by the
same code (`gateway.tensors`), so both protocols accept and refuse alike:

- typed `contents` become the tensor's data (BYTES elements must be UTF-8, as over REST);
- `raw_input_contents[i]` becomes input i's binary data, as if its `binary_data_size`
  were the entry's length (Triton's framing: fixed-size types little-endian, each BYTES
  element a 4-byte little-endian length and its bytes);
- outputs are answered as the request was sent: raw when it sent `raw_input_contents`
  (or asked for binary outputs), typed contents otherwise. The protocol forbids mixing
  the two in one response, and FP16 has no typed field, so an FP16 output makes them all
  raw.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from gateway.dataplane import Framing
from gateway.errors import BadRequestError
from gateway.grpc import protos
from gateway.protocol import InferenceRequest
from gateway.tensors import convert_request, tensor_bytes
from registry import TensorSpec

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
"""The `InferTensorContents` field of each datatype; FP16 has none (raw only)."""


def decode(message: Any, _header_length: int | None = None) -> tuple[InferenceRequest, memoryview]:
    """The request a `ModelInferRequest` carries, and its raw tensor data end to end."""
    raw = message.raw_input_contents
    tensors = message.inputs
    if raw and len(raw) != len(tensors):
        raise BadRequestError(
            f"raw_input_contents has {len(raw)} entries but the request has "
            f"{len(tensors)} inputs; send one entry per input, in the order of inputs"
        )
    inputs = []
    for index, tensor in enumerate(tensors):
        fields: dict[str, Any] = {
            "name": tensor.name,
            "shape": list(tensor.shape),
            "datatype": tensor.datatype,
        }
        if raw:
            if tensor.HasField("contents"):
                raise BadRequestError(
                    f"input {tensor.name!r} has contents but the request sends "
                    "raw_input_contents; send every input one way or the other"
                )
            fields["parameters"] = {"binary_data_size": len(raw[index])}
        elif tensor.HasField("contents"):
            fields["data"] = _typed_data(tensor)
        inputs.append(fields)
    parameters = _parameters(message.parameters)
    parameters.setdefault("binary_data_output", bool(raw))  # answer as asked
    request: dict[str, Any] = {"inputs": inputs, "parameters": parameters}
    if request_id := message.id:
        request["id"] = request_id
    if wanted := message.outputs:
        request["outputs"] = [
            {"name": output.name, "parameters": _parameters(output.parameters) or None}
            for output in wanted
        ]
    binary = memoryview(raw[0] if len(raw) == 1 else b"".join(raw))
    return convert_request(request), binary


def _typed_data(tensor: Any) -> list[Any]:
    """The elements of an input's typed contents, from the field its datatype names."""
    contents = tensor.contents
    filled = [field.name for field, _ in contents.ListFields()]
    expected = CONTENTS.get(tensor.datatype)
    if len(filled) > 1:
        raise BadRequestError(
            f"input {tensor.name!r} fills {', '.join(filled)}; its data goes in one field"
            + (f", {expected}" if expected else "")
        )
    if tensor.datatype == "FP16":
        raise BadRequestError(
            f"input {tensor.name!r} is FP16, which has no contents field; send it in "
            "raw_input_contents (little-endian IEEE half floats)"
        )
    if not filled:
        return []  # an empty tensor: its shape says whether that is right
    field = filled[0]
    if expected is not None and field != expected:
        raise BadRequestError(
            f"input {tensor.name!r} is {tensor.datatype}: its data goes in contents.{expected}, "
            f"not contents.{field}"
        )
    values = getattr(contents, field)
    if field != "bytes_contents":
        return list(values)
    try:
        return [item.decode("utf-8") for item in values]
    except UnicodeDecodeError as exc:
        raise BadRequestError(f"input {tensor.name!r}: BYTES element is not UTF-8") from exc


def _parameters(parameters: Mapping[str, Any]) -> dict[str, Any]:
    """An `InferParameter` map as plain values (bool, int, str or float)."""
    values: dict[str, Any] = {}
    if not parameters:
        return values
    for name, parameter in parameters.items():
        choice = parameter.WhichOneof("parameter_choice")
        values[name] = getattr(parameter, choice) if choice else None
    return values


def encode(
    *,
    model_name: str,
    model_version: int,
    request_id: str | None,
    outputs: Sequence[tuple[TensorSpec, np.ndarray, bool]],
) -> tuple[bytes, int | None]:
    """A serialized `ModelInferResponse` of (spec, array, as binary) outputs."""
    raw = any(binary or spec.datatype not in CONTENTS for spec, _, binary in outputs)
    tensors: list[dict[str, Any]] = []
    for spec, array, _ in outputs:
        tensor: dict[str, Any] = {
            "name": spec.name,
            "datatype": spec.datatype,
            "shape": array.shape,
        }
        if not raw:
            tensor["contents"] = {CONTENTS[spec.datatype]: _elements(array, spec)}
        tensors.append(tensor)
    # One constructor call: the message is built in C, a field at a time costs twice as much.
    response = protos.ModelInferResponse(
        model_name=model_name,
        model_version=str(model_version),
        id=request_id or "",
        outputs=tensors,
        raw_output_contents=[tensor_bytes(a, s.datatype) for s, a, _ in outputs] if raw else (),
    )
    return response.SerializeToString(), None


def _elements(array: np.ndarray, spec: TensorSpec) -> list[Any]:
    flat = array.reshape(-1)
    if spec.datatype == "BYTES":
        return [item if isinstance(item, bytes) else str(item).encode() for item in flat]
    values: list[Any] = flat.tolist()
    return values


GRPC = Framing("grpc", decode, encode)
"""The data plane's framing of gRPC's infer calls."""
