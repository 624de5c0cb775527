"""Tiny real ONNX models built with onnx.helper, and reference data that fits them."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np
import onnx
import polars as pl
from onnx import TensorProto, helper

OPSET = [helper.make_opsetid("", 17)]

# OIP datatype -> (ONNX element type, polars dtype of its reference column)
ALL_TYPES: dict[str, tuple[int, pl.DataType]] = {
    "BOOL": (TensorProto.BOOL, pl.Boolean()),
    "UINT8": (TensorProto.UINT8, pl.UInt8()),
    "UINT16": (TensorProto.UINT16, pl.UInt16()),
    "UINT32": (TensorProto.UINT32, pl.UInt32()),
    "UINT64": (TensorProto.UINT64, pl.UInt64()),
    "INT8": (TensorProto.INT8, pl.Int8()),
    "INT16": (TensorProto.INT16, pl.Int16()),
    "INT32": (TensorProto.INT32, pl.Int32()),
    "INT64": (TensorProto.INT64, pl.Int64()),
    "FP16": (TensorProto.FLOAT16, pl.Float32()),
    "FP32": (TensorProto.FLOAT, pl.Float32()),
    "FP64": (TensorProto.DOUBLE, pl.Float64()),
    "BYTES": (TensorProto.STRING, pl.String()),
}


def _save(model: onnx.ModelProto, path: Path) -> Path:
    onnx.checker.check_model(model)
    path.write_bytes(model.SerializeToString())
    return path


def affine_model(path: Path, *, features: int = 4, offset: float = 1.0) -> Path:
    """`y = x + offset` and `total = sum(x, axis=1)` over x: FP32 [batch, features]."""
    graph = helper.make_graph(
        [
            helper.make_node("Add", ["x", "offset"], ["y"]),
            helper.make_node("ReduceSum", ["x", "axes"], ["total"], keepdims=0),
        ],
        "affine",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", features])],
        [
            helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", features]),
            helper.make_tensor_value_info("total", TensorProto.FLOAT, ["batch"]),
        ],
        initializer=[
            helper.make_tensor("offset", TensorProto.FLOAT, [], [offset]),
            helper.make_tensor("axes", TensorProto.INT64, [1], [1]),
        ],
    )
    return _save(helper.make_model(graph, opset_imports=OPSET), path)


def identity_model(path: Path, datatypes: Iterable[str] = ALL_TYPES) -> Path:
    """One Identity per OIP datatype (all, or `datatypes`): input `in_<type>` [batch] ->
    output `out_<type>`."""
    types = {datatype: ALL_TYPES[datatype] for datatype in datatypes}
    names = [datatype.lower() for datatype in types]
    graph = helper.make_graph(
        [helper.make_node("Identity", [f"in_{name}"], [f"out_{name}"]) for name in names],
        "identity",
        [
            helper.make_tensor_value_info(f"in_{name}", onnx_type, ["batch"])
            for name, (onnx_type, _) in zip(names, types.values(), strict=True)
        ],
        [
            helper.make_tensor_value_info(f"out_{name}", onnx_type, ["batch"])
            for name, (onnx_type, _) in zip(names, types.values(), strict=True)
        ],
    )
    return _save(helper.make_model(graph, opset_imports=OPSET), path)


def passthrough_model(path: Path) -> Path:
    """`y = x` over x: FP32 [batch, width], both dimensions variable."""
    graph = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["y"])],
        "passthrough",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", "width"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", "width"])],
    )
    return _save(helper.make_model(graph, opset_imports=OPSET), path)


def lookup_model(path: Path) -> Path:
    """`value = table[index]` over a 3-entry table: an index past 2 fails inside the runtime."""
    graph = helper.make_graph(
        [helper.make_node("Gather", ["table", "index"], ["value"])],
        "lookup",
        [helper.make_tensor_value_info("index", TensorProto.INT64, ["batch"])],
        [helper.make_tensor_value_info("value", TensorProto.FLOAT, ["batch"])],
        initializer=[helper.make_tensor("table", TensorProto.FLOAT, [3], [10.0, 20.0, 30.0])],
    )
    return _save(helper.make_model(graph, opset_imports=OPSET), path)


def lookup_reference(path: Path) -> Path:
    """Valid indices for `lookup_model`."""
    pl.DataFrame({"index": [0, 1, 2] * 20}).write_csv(path)
    return path


def affine_reference(path: Path, *, rows: int = 500, features: int = 4, seed: int = 0) -> Path:
    """Normal reference data for `affine_model`, with a `label` target column."""
    rng = np.random.default_rng(seed)
    data = rng.normal(size=(rows, features)).astype(np.float32)
    frame = pl.DataFrame(data, schema=[f"f{i}" for i in range(features)], orient="row")
    frame = frame.with_columns(label=pl.Series(rng.integers(0, 2, rows)))
    if path.suffix == ".csv":
        frame.write_csv(path)
    else:
        frame.write_parquet(path)
    return path


def identity_reference(path: Path, *, rows: int = 50, datatypes: Iterable[str] = ALL_TYPES) -> Path:
    """One column per input of `identity_model` (of the same `datatypes`), in its type."""
    columns = {}
    for datatype in datatypes:
        dtype = ALL_TYPES[datatype][1]
        if datatype == "BYTES":
            values: list[object] = [f"s{i % 5}" for i in range(rows)]
        elif datatype == "BOOL":
            values = [i % 2 == 0 for i in range(rows)]
        else:
            values = [i % 7 for i in range(rows)]
        columns[f"in_{datatype.lower()}"] = pl.Series(values, dtype=dtype)
    pl.DataFrame(columns).write_parquet(path)
    return path
