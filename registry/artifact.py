"""What a model artifact may hold: the whole model in `model.onnx`, nothing outside it.

An ONNX tensor can keep its bytes in an external file named by a relative path. ONNX
Runtime resolves that path against the model's directory, or against the working directory
when the model is loaded from bytes, as the gateway does: a model pointing at
`driftgate.toml` or `state/audit.jsonl` would serve that file's bytes back through infer.
The sha256 recorded at registration covers `model.onnx` alone, so external data would also
escape the integrity check. Every tensor must therefore be stored inside the model;
`onnx.save_model(model, path, save_as_external_data=False)` converts one that is not.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import onnx
from google.protobuf.message import DecodeError

from registry.errors import InvalidModelError

_CONVERT = (
    "save it with its tensors inside the file "
    "(onnx.save_model(onnx.load(path), path, save_as_external_data=False))"
)


def check_self_contained(model: bytes) -> None:
    """Refuse a model any of whose tensors keeps its data in an external file.

    Raises:
        InvalidModelError: the model is not ONNX, or names external data (which tensor).
    """
    try:
        proto = onnx.ModelProto.FromString(model)
    except (DecodeError, RecursionError) as exc:
        raise InvalidModelError(f"cannot load the model: it is not an ONNX file ({exc})") from exc
    for tensor in _tensors(proto):
        if tensor.data_location == onnx.TensorProto.EXTERNAL or len(tensor.external_data):
            raise InvalidModelError(
                f"tensor {tensor.name!r} keeps its data in an external file, which driftgate "
                f"refuses (it would be read from outside the artifact and its checksum); {_CONVERT}"
            )


def _tensors(model: onnx.ModelProto) -> Iterator[onnx.TensorProto]:
    """Every tensor ONNX Runtime could load: initializers and attribute values of the main
    graph, its subgraphs, local functions and training graphs."""
    yield from _graph_tensors(model.graph)
    for function in model.functions:
        yield from _attribute_tensors(function.attribute_proto)
        for node in function.node:
            yield from _attribute_tensors(node.attribute)
    for info in model.training_info:
        yield from _graph_tensors(info.initialization)
        yield from _graph_tensors(info.algorithm)


def _graph_tensors(graph: onnx.GraphProto) -> Iterator[onnx.TensorProto]:
    yield from graph.initializer
    for sparse in graph.sparse_initializer:
        yield from (sparse.values, sparse.indices)
    for node in graph.node:
        yield from _attribute_tensors(node.attribute)


def _attribute_tensors(attributes: Iterable[onnx.AttributeProto]) -> Iterator[onnx.TensorProto]:
    for attribute in attributes:
        if attribute.HasField("t"):
            yield attribute.t
        yield from attribute.tensors
        sparse = [attribute.sparse_tensor] if attribute.HasField("sparse_tensor") else []
        for tensor in [*sparse, *attribute.sparse_tensors]:
            yield from (tensor.values, tensor.indices)
        if attribute.HasField("g"):
            yield from _graph_tensors(attribute.g)
        for graph in attribute.graphs:
            yield from _graph_tensors(graph)
