"""The benchmark's models, data and requests, and the model's own cost (the inference limit).

Three models, each over one FP32 input `x`:

- `classifier`, what users serve: scikit-learn's `StandardScaler` + `MLPClassifier(256, 256)`
  trained on its bundled breast-cancer data (569 rows of 30 features), exported by skl2onnx
  with zipmap off, so it answers `label` INT64 [batch] and `probabilities` FP32 [batch, 2].
  Its reference data are the data set's rows; its request is one of them.
- `mlp` (20 -> 256 -> 256 -> 1, ReLU, the size issue 6 measures) and `tiny` (one 20 -> 1
  layer, where HTTP is nearly all the cost), random weights over 20 standard-normal features.

Everything comes from fixed seeds and is built afresh into each run's own directory (the
classifier trains in about a second), so every run serves the same model bytes.
"""

from __future__ import annotations

import itertools
import os
import statistics
import time
import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path

import msgspec
import numpy as np
import onnx
import onnxruntime as ort
import polars as pl
from onnx import TensorProto, helper, numpy_helper

from benchmarks import datasets
from benchmarks.scenario import BenchmarkError
from registry import ModelRegistry

CLASSIFIER = "classifier"
MODELS = (CLASSIFIER, "mlp", "tiny")
"""Every model's name; the first is the one served unless another is asked for."""
FEATURES = 20
"""The width of `mlp`'s and `tiny`'s input."""
_HIDDEN = {"mlp": (256, 256), "tiny": ()}
"""Hidden layer widths of the random MLPs."""
_DATASET = "breast_cancer"
_ROW = 13
"""The classifier's request: a row it gets right with probability 0.93, not a saturated 1.0,
so that a server answering other probabilities cannot pass for one answering these."""
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


def classifier_model(path: Path, reference: Path) -> Path:
    """Train the classifier on the breast-cancer rows and export it to `path`; the rows, in
    the data set's own column names, go to `reference` as Parquet. Returns `path`."""
    from skl2onnx import to_onnx
    from skl2onnx.common.data_types import FloatTensorType
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    data = datasets.load(_DATASET)
    features = data.data.astype(np.float32)
    pipeline = make_pipeline(
        StandardScaler(),
        # 20 epochs: 99% right on its training rows in under a second; more buys nothing
        # a benchmark needs.
        MLPClassifier(hidden_layer_sizes=(256, 256), max_iter=20, random_state=0),
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        pipeline.fit(features, data.target)
    exported = to_onnx(
        pipeline,
        initial_types=[("x", FloatTensorType([None, features.shape[1]]))],
        options={"zipmap": False},  # plain tensors, not a list of {class: probability} maps
        target_opset={"": 17, "ai.onnx.ml": 3},
    )
    path.write_bytes(exported.SerializeToString())
    pl.DataFrame(data.data, schema=list(data.features), orient="row").write_parquet(reference)
    return path


def reference_data(path: Path, *, rows: int = 1000, seed: int = 0) -> Path:
    """`rows` standard-normal rows in columns f0..f19, as Parquet; returns `path`."""
    values = np.random.default_rng(seed).standard_normal((rows, FEATURES), dtype=np.float32)
    pl.DataFrame({f"f{i}": values[:, i] for i in range(FEATURES)}).write_parquet(path)
    return path


def reference_path(model: Path) -> Path:
    """Where `build_artifacts` put the reference data of the model at `model`."""
    return model.with_suffix(".parquet")


def build_artifacts(directory: Path, names: Iterable[str] = MODELS) -> dict[str, Path]:
    """The models called `names`, each `<name>.onnx` beside its reference `<name>.parquet`,
    under `directory`; the model files by name."""
    directory.mkdir(parents=True, exist_ok=True)
    built = {}
    for name in names:
        model = directory / f"{name}.onnx"
        if name == CLASSIFIER:
            classifier_model(model, reference_path(model))
        else:
            mlp_model(model, _HIDDEN[name])
            reference_data(reference_path(model))
        built[name] = model
    return built


def register_all(home: Path, artifacts: dict[str, Path]) -> None:
    """A gateway data directory at `home` with every model registered (version 1)."""
    registry = ModelRegistry(home / "models")
    for name, model in artifacts.items():
        registry.register(name, model, reference_path(model), description="benchmark model")


def request_row(model: str = "mlp", *, seed: int = 1) -> list[float]:
    """The one row every server is asked about: for the classifier a row of its data set,
    for the others fixed random features, rounded so their JSON stays short and exact."""
    if model == CLASSIFIER:
        return [float(value) for value in datasets.load(_DATASET).data[_ROW]]
    rng = np.random.default_rng(seed)
    return [round(float(v), 4) for v in rng.standard_normal(FEATURES)]


def infer_body(row: list[float]) -> bytes:
    """The Open Inference Protocol JSON request for one row: what every server receives."""
    tensor = {"name": "x", "shape": [1, len(row)], "datatype": "FP32", "data": row}
    return msgspec.json.encode({"inputs": [tensor]})


class Tensor(msgspec.Struct, frozen=True, kw_only=True):
    """An output tensor as the Open Inference Protocol's JSON carries it."""

    name: str
    datatype: str
    shape: list[int]
    data: list[int | float]


class OrtLimit(msgspec.Struct, frozen=True, kw_only=True):
    """The model run bare: its time per batch-1 call, and the answer every server must give."""

    call_us: float
    """Median microseconds of one `session.run` on one row."""
    outputs: list[Tensor]
    """Every output for the row: a server that answers otherwise is not running the model."""


_DATATYPES = {np.dtype(np.float32): "FP32", np.dtype(np.int64): "INT64"}


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
    outputs = [
        Tensor(
            name=spec.name,
            datatype=_DATATYPES[value.dtype],
            shape=list(value.shape),
            data=value.ravel().tolist(),
        )
        for spec, value in zip(session.get_outputs(), session.run(None, inputs), strict=True)
    ]
    return OrtLimit(call_us=statistics.median(times) / 1000, outputs=outputs)


def check_answer(server: str, answer: bytes, expected: Sequence[Tensor]) -> None:
    """Refuse a server whose OIP answer is not the model's own: every output by name, with
    its datatype and shape (a column [n, 1] passes for a vector [n]), integers exactly and
    floats within float32 rounding."""
    try:
        outputs = msgspec.json.decode(answer, type=_Answer).outputs
    except msgspec.DecodeError as exc:
        raise BenchmarkError(f"{server} answered no OIP outputs: {answer[:300]!r}") from exc
    by_name = {output.name: output for output in outputs}
    for want in expected:
        got = by_name.get(want.name)
        if got is None:
            raise BenchmarkError(f"{server} answered no output {want.name!r}: {answer[:300]!r}")
        if (got.datatype, _squeezed(got.shape)) != (want.datatype, _squeezed(want.shape)):
            raise BenchmarkError(
                f"{server} answered {want.name} as {got.datatype} {got.shape}, the model "
                f"gives {want.datatype} {want.shape}"
            )
        same = (
            np.allclose(got.data, want.data, rtol=1e-5, atol=1e-6)
            if want.datatype.startswith("FP")
            # JSON integers, not 0.0 for 0: a client decoding INT64 needs them so.
            else got.data == want.data and all(isinstance(value, int) for value in got.data)
        )
        if not same:
            raise BenchmarkError(
                f"{server} answered {want.name} = {got.data}, the model gives {want.data}"
            )


class _Answer(msgspec.Struct):
    outputs: list[Tensor]


def _squeezed(shape: list[int]) -> list[int]:
    """`shape` without trailing 1s past the batch: MLServer's NumpyCodec answers a vector
    [batch] as a column [batch, 1], holding the same values."""
    while len(shape) > 1 and shape[-1] == 1:
        shape = shape[:-1]
    return shape
