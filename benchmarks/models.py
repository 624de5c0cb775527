"""The benchmark's models, data and request, and the model's own cost (the inference limit).

Two models over one FP32 input `x` of shape [batch, 20]: `mlp` (20 -> 256 -> 256 -> 1, the
size issue 6 measures) and `tiny` (one 20 -> 1 layer, where HTTP is nearly all the cost).
Weights and data come from fixed seeds, so every run serves the same bytes.
"""

from __future__ import annotations

import itertools
import os
import statistics
import time
from pathlib import Path

import msgspec
import numpy as np
import onnx
import onnxruntime as ort
import polars as pl
from onnx import TensorProto, helper, numpy_helper

from registry import ModelRegistry

FEATURES = 20
MODELS = {"mlp": (256, 256), "tiny": ()}
"""Model name -> hidden layer widths."""
_OPSET = [helper.make_opsetid("", 17)]


def mlp_model(path: Path, hidden: tuple[int, ...], *, seed: int = 0) -> Path:
    """A ReLU MLP `x` [batch, 20] -> `y` [batch, 1], He-scaled random weights; returns `path`."""
    rng = np.random.default_rng(seed)
    widths = [FEATURES, *hidden, 1]
    nodes, weights, current = [], [], "x"
    for layer, (fan_in, fan_out) in enumerate(itertools.pairwise(widths)):
        w = rng.normal(0, np.sqrt(2 / fan_in), (fan_in, fan_out)).astype(np.float32)
        b = rng.normal(0, 0.01, fan_out).astype(np.float32)
        weights += [
            numpy_helper.from_array(w, f"w{layer}"),
            numpy_helper.from_array(b, f"b{layer}"),
        ]
        is_hidden = layer < len(hidden)
        linear = f"h{layer}" if is_hidden else "y"
        nodes.append(helper.make_node("Gemm", [current, f"w{layer}", f"b{layer}"], [linear]))
        if is_hidden:
            current = f"a{layer}"
            nodes.append(helper.make_node("Relu", [linear], [current]))
    graph = helper.make_graph(
        nodes,
        "mlp",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", FEATURES])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 1])],
        initializer=weights,
    )
    model = helper.make_model(graph, opset_imports=_OPSET)
    onnx.checker.check_model(model)
    path.write_bytes(model.SerializeToString())
    return path


def reference_data(path: Path, *, rows: int = 1000, seed: int = 0) -> Path:
    """`rows` standard-normal rows in columns f0..f19, as Parquet; returns `path`."""
    values = np.random.default_rng(seed).standard_normal((rows, FEATURES), dtype=np.float32)
    pl.DataFrame({f"f{i}": values[:, i] for i in range(FEATURES)}).write_parquet(path)
    return path


def build_artifacts(directory: Path) -> dict[str, Path]:
    """Every model file and `reference.parquet` under `directory`; model paths by name."""
    directory.mkdir(parents=True, exist_ok=True)
    reference_data(directory / "reference.parquet")
    return {name: mlp_model(directory / f"{name}.onnx", hidden) for name, hidden in MODELS.items()}


def register_all(home: Path, artifacts: dict[str, Path]) -> None:
    """A gateway data directory at `home` with every model registered (version 1)."""
    registry = ModelRegistry(home / "models")
    reference = next(iter(artifacts.values())).parent / "reference.parquet"
    for name, model in artifacts.items():
        registry.register(name, model, reference, description="benchmark model")


def request_row(*, seed: int = 1) -> list[float]:
    """One fixed row of 20 features, rounded so its JSON stays short and exact."""
    rng = np.random.default_rng(seed)
    return [round(float(v), 4) for v in rng.standard_normal(FEATURES)]


def infer_body(row: list[float]) -> bytes:
    """The Open Inference Protocol JSON request for one row: what every server receives."""
    tensor = {"name": "x", "shape": [1, FEATURES], "datatype": "FP32", "data": row}
    return msgspec.json.encode({"inputs": [tensor]})


class OrtLimit(msgspec.Struct, frozen=True, kw_only=True):
    """The model run bare: its time per batch-1 call, and the answer every server must give."""

    call_us: float
    """Median microseconds of one `session.run` on one row."""
    output: list[float]
    """Output `y` for the row: a server that answers otherwise is not running the model."""


def ort_limit(model: Path, row: list[float], *, calls: int = 5000, cpu: int | None) -> OrtLimit:
    """Time `calls` batch-1 runs of `model` in this process, pinned to `cpu`.

    The session has the gateway's settings (one intra-op thread), so this is the least
    any server can spend on the model per batch-1 request.
    """
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])
    inputs = {"x": np.asarray([row], dtype=np.float32)}
    affinity = os.sched_getaffinity(0)
    if cpu is not None:
        os.sched_setaffinity(0, {cpu})
    try:
        for _ in range(calls // 10):  # warm-up: allocations, caches, CPU frequency
            session.run(None, inputs)
        times = []
        for _ in range(calls):
            start = time.perf_counter_ns()
            session.run(None, inputs)
            times.append(time.perf_counter_ns() - start)
    finally:
        os.sched_setaffinity(0, affinity)
    (output,) = session.run(["y"], inputs)
    return OrtLimit(
        call_us=statistics.median(times) / 1000, output=[float(v) for v in output.ravel()]
    )
