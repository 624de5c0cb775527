"""Explanations per prediction on the real app: Shapley attributions that add up, agree
with exact Shapley values, stay within their limits and behind their role."""

from __future__ import annotations

import itertools
import math
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import polars as pl
import pytest
from litestar.testing import TestClient
from onnx import TensorProto, helper, numpy_helper

from gateway.app import create_app
from gateway.attribution import load
from gateway.errors import ServiceUnavailableError
from gateway.explain import background_of
from gateway.settings import Settings
from registry import ModelRegistry
from tests import models
from tests.conftest import ADMIN_TOKEN, FEEDBACK_TOKEN, READ_TOKEN

Client = TestClient[Any]
EXPLAIN_TOKEN = "s3cret-explain"
TOKENS = (
    f"alice:admin:{ADMIN_TOKEN},grafana:read:{READ_TOKEN},labeller:feedback:{FEEDBACK_TOKEN},"
    f"auditor:explain:{EXPLAIN_TOKEN}"
)
EXPLAINER = {"Authorization": f"Bearer {EXPLAIN_TOKEN}"}
WEIGHTS = np.array([1.5, -2.0, 0.5, 3.0], dtype=np.float32)
MEANS, STDS = np.array([1.0, -2.0, 0.5, 3.0]), np.array([1.0, 2.0, 0.5, 1.5])
BACKGROUND = 100  # explain_background_rows, the default


def _save(graph: onnx.GraphProto, path: Path) -> Path:
    model = helper.make_model(graph, opset_imports=models.OPSET)
    onnx.checker.check_model(model)
    path.write_bytes(model.SerializeToString())
    return path


def linear_model(path: Path) -> Path:
    """A regressor `y = x @ WEIGHTS + 0.25`: FP32 [batch, 4] -> [batch, 1]."""
    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["x", "w"], ["xw"]),
            helper.make_node("Add", ["xw", "b"], ["y"]),
        ],
        "linear",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 1])],
        initializer=[
            numpy_helper.from_array(WEIGHTS.reshape(4, 1), "w"),
            numpy_helper.from_array(np.array([0.25], dtype=np.float32), "b"),
        ],
    )
    return _save(graph, path)


def classifier_model(path: Path) -> Path:
    """Three classes from three features, with an interaction: softmax(x @ W + x0 x1 v);
    outputs `label` (INT64) and `probabilities` (FP32 [batch, 3])."""
    rng = np.random.default_rng(7)
    nodes = [
        helper.make_node("MatMul", ["x", "W"], ["linear"]),
        helper.make_node("Gather", ["x", "first"], ["x0"], axis=1),
        helper.make_node("Gather", ["x", "second"], ["x1"], axis=1),
        helper.make_node("Mul", ["x0", "x1"], ["pair"]),
        helper.make_node("Mul", ["pair", "v"], ["interaction"]),
        helper.make_node("Add", ["linear", "interaction"], ["logits"]),
        helper.make_node("Softmax", ["logits"], ["probabilities"], axis=1),
        helper.make_node("ArgMax", ["logits"], ["label"], axis=1, keepdims=0),
    ]
    graph = helper.make_graph(
        nodes,
        "classifier",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3])],
        [
            helper.make_tensor_value_info("label", TensorProto.INT64, ["batch"]),
            helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["batch", 3]),
        ],
        initializer=[
            numpy_helper.from_array(rng.normal(size=(3, 3)).astype(np.float32), "W"),
            numpy_helper.from_array(np.array([[1.0, -1.0, 0.5]], dtype=np.float32), "v"),
            numpy_helper.from_array(np.array([0], dtype=np.int64), "first"),
            numpy_helper.from_array(np.array([1], dtype=np.int64), "second"),
        ],
    )
    return _save(graph, path)


def mlp_model(path: Path, *, features: int = 12, hidden: int = 128) -> Path:
    """A two-layer ReLU network `[batch, features] -> [batch, 1]`: slow enough per row that
    a large explanation of it takes seconds."""
    rng = np.random.default_rng(3)
    scale = 1.0 / math.sqrt(hidden)
    layers = {
        "w1": rng.normal(size=(features, hidden)),
        "w2": rng.normal(size=(hidden, hidden)) * scale,
        "w3": rng.normal(size=(hidden, 1)) * scale,
    }
    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["x", "w1"], ["h1"]),
            helper.make_node("Relu", ["h1"], ["a1"]),
            helper.make_node("MatMul", ["a1", "w2"], ["h2"]),
            helper.make_node("Relu", ["h2"], ["a2"]),
            helper.make_node("MatMul", ["a2", "w3"], ["y"]),
        ],
        "mlp",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", features])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 1])],
        initializer=[numpy_helper.from_array(w.astype(np.float32), n) for n, w in layers.items()],
    )
    return _save(graph, path)


def reference(path: Path, means: np.ndarray, stds: np.ndarray, rows: int = 1000) -> Path:
    data = np.random.default_rng(11).normal(means, stds, size=(rows, len(means)))
    names = [f"f{i}" for i in range(len(means))]
    pl.DataFrame(data.astype(np.float32), schema=names, orient="row").write_parquet(path)
    return path


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A registry of a linear regressor, a classifier with an interaction, an MLP of twelve
    features and `lookup` (one 1-D integer input: not tabular)."""
    root = tmp_path_factory.mktemp("explain")
    registry = ModelRegistry(root / "models")
    registry.register(
        "linear", linear_model(root / "linear.onnx"), reference(root / "l.parquet", MEANS, STDS)
    )
    three = np.zeros(3), np.ones(3)
    registry.register(
        "classifier",
        classifier_model(root / "classifier.onnx"),
        reference(root / "c.parquet", *three),
    )
    twelve = np.zeros(12), np.ones(12)
    registry.register(
        "mlp", mlp_model(root / "mlp.onnx"), reference(root / "m.parquet", *twelve, rows=500)
    )
    registry.register(
        "lookup",
        models.lookup_model(root / "lookup.onnx"),
        models.lookup_reference(root / "lookup.csv"),
    )
    return root


@pytest.fixture(scope="module")
def client(home: Path) -> Iterator[Client]:
    """The real app, with an evaluation budget that the MLP's wide explanations pass."""
    settings = Settings(home=home, tokens=TOKENS, explain_max_evaluations=20_000)
    with TestClient(app=create_app(settings)) as test_client:  # type: ignore[arg-type]
        yield test_client


def body(rows: np.ndarray, name: str = "x", request_id: str | None = None) -> dict[str, Any]:
    tensor = {"name": name, "shape": list(rows.shape), "datatype": "FP32"}
    return {"id": request_id, "inputs": [{**tensor, "data": rows.reshape(-1).tolist()}]}


def explain(client: Client, model: str, rows: np.ndarray, **headers: str) -> Any:
    response = client.post(
        f"/v1/models/{model}/explain", json=body(rows), headers=headers or EXPLAINER
    )
    assert response.status_code == 200, response.text
    return response.json()


def column(explained: Any, name: str) -> Any:
    return next(output for output in explained["outputs"] if output["name"] == name)


def test_linear_attributions_are_weight_times_distance_from_the_background_mean(
    client: Client, home: Path
) -> None:
    rows = np.array([[2.0, -1.0, 0.0, 4.0], [0.0, 0.0, 1.0, 2.5]], dtype=np.float32)
    explained = explain(client, "linear", rows)
    assert explained["method"] == "exact"
    assert explained["features"] == ["f0", "f1", "f2", "f3"]
    manifest = ModelRegistry(home / "models").manifest("linear")
    mean = background_of(manifest, BACKGROUND).astype(np.float32).mean(axis=0)
    y = column(explained, "y")
    expected = WEIGHTS * (rows - mean)
    np.testing.assert_allclose(y["attributions"], expected, atol=1e-4)
    # The background follows the reference profile: its mean is the training mean.
    assert (np.abs(mean - MEANS) < 0.1 * STDS).all(), mean
    assert explained["evaluations"] <= 20_000


def brute_force(model: Path, row: np.ndarray, background: np.ndarray) -> np.ndarray:
    """Interventional Shapley values by enumerating every coalition: phi_i = sum over S
    without i of |S|! (M - |S| - 1)! / M! (v(S + i) - v(S)), v(S) the mean output when the
    features in S are the row's and the others each background row's."""
    session = ort.InferenceSession(model.read_bytes(), providers=["CPUExecutionProvider"])

    def worth(coalition: tuple[int, ...]) -> np.ndarray:
        masked = background.copy()
        masked[:, list(coalition)] = row[list(coalition)]
        (probabilities,) = session.run(["probabilities"], {"x": masked.astype(np.float32)})
        return np.asarray(probabilities, dtype=np.float64).mean(axis=0)

    count = len(row)
    phi = np.zeros((count, 3))
    for i in range(count):
        others = [j for j in range(count) if j != i]
        for size in range(count):
            weight = math.factorial(size) * math.factorial(count - size - 1) / math.factorial(count)
            for coalition in itertools.combinations(others, size):
                phi[i] += weight * (worth((*coalition, i)) - worth(coalition))
    return phi


def test_classifier_attributions_agree_with_exact_shapley_values_and_add_up(
    client: Client, home: Path
) -> None:
    rows = np.array([[1.2, -0.7, 0.3], [-1.5, -1.0, 2.0], [0.1, 0.2, -0.4]], dtype=np.float32)
    explained = explain(client, "classifier", rows)
    assert explained["method"] == "exact"
    # Every class probability is explained; the label (an integer) cannot be attributed.
    names = [output["name"] for output in explained["outputs"]]
    assert names == ["probabilities[0]", "probabilities[1]", "probabilities[2]"]
    served = client.post("/v2/models/classifier/infer", json=body(rows)).json()
    probabilities = np.array(
        next(o["data"] for o in served["outputs"] if o["name"] == "probabilities")
    ).reshape(3, 3)
    manifest = ModelRegistry(home / "models").manifest("classifier")
    background = background_of(manifest, BACKGROUND)
    baselines = []
    for index, output in enumerate(explained["outputs"]):
        attributions = np.array(output["attributions"])
        # Efficiency: each row's attributions add up to its prediction minus the baseline.
        np.testing.assert_allclose(
            attributions.sum(axis=1) + output["baseline"], output["predictions"], atol=1e-6
        )
        np.testing.assert_allclose(output["predictions"], probabilities[:, index], rtol=1e-6)
        baselines.append(output["baseline"])
    assert sum(baselines) == pytest.approx(1.0, abs=1e-6)  # mean probabilities: a distribution
    model = home / "models" / "classifier" / "1" / "model.onnx"
    for r, row in enumerate(rows):
        exact = brute_force(model, row.astype(np.float64), background)
        found = np.array([output["attributions"][r] for output in explained["outputs"]]).T
        np.testing.assert_allclose(found, exact, atol=1e-5)


def test_past_every_coalition_the_kernel_estimate_still_adds_up(client: Client) -> None:
    rows = np.random.default_rng(5).normal(size=(2, 12)).astype(np.float32)
    first = explain(client, "mlp", rows)
    assert first["method"] == "kernel"  # 2^12 coalitions do not fit 20,000 model rows
    y = column(first, "y")
    attributions = np.array(y["attributions"])
    np.testing.assert_allclose(
        attributions.sum(axis=1) + y["baseline"], y["predictions"], atol=1e-4
    )
    assert first["evaluations"] <= 20_000
    assert explain(client, "mlp", rows) == first  # sampled coalitions, seeded: the same again


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({}, 401),
        ({"Authorization": f"Bearer {READ_TOKEN}"}, 403),
        ({"Authorization": f"Bearer {FEEDBACK_TOKEN}"}, 403),
        ({"Authorization": f"Bearer {ADMIN_TOKEN}"}, 200),
        (EXPLAINER, 200),
    ],
)
def test_explanations_need_the_explain_or_admin_role(
    client: Client, headers: dict[str, str], status: int
) -> None:
    rows = np.zeros((1, 4), dtype=np.float32)
    response = client.post("/v1/models/linear/versions/1/explain", json=body(rows), headers=headers)
    assert response.status_code == status, response.text
    if status != 200:
        assert "error" in response.json()


@pytest.mark.parametrize(
    ("model", "rows", "status", "words"),
    [
        ("lookup", np.zeros((1, 1)), 400, "tabular models"),
        ("linear", np.zeros((1, 3)), 400, "has shape [1, 3] but the model expects [-1, 4]"),
        ("linear", np.zeros((17, 4)), 413, "at most 16 (explain_max_rows)"),
        ("mlp", np.zeros((16, 12)), 413, "send at most 7 rows per call"),
        ("nothing", np.zeros((1, 4)), 404, "not registered"),
    ],
)
def test_bad_calls_are_told_what_to_fix(
    client: Client, model: str, rows: np.ndarray, status: int, words: str
) -> None:
    request = body(rows, name="index" if model == "lookup" else "x")
    if model == "lookup":
        request["inputs"][0].update(datatype="INT64", shape=[1], data=[0])
    response = client.post(f"/v1/models/{model}/explain", json=request, headers=EXPLAINER)
    assert response.status_code == status, response.text
    assert words in response.json()["error"]


def test_an_unknown_version_is_404(client: Client) -> None:
    rows = np.zeros((1, 4), dtype=np.float32)
    response = client.post(
        "/v1/models/linear/versions/9/explain", json=body(rows), headers=EXPLAINER
    )
    assert response.status_code == 404
    assert "version 9" in response.json()["error"]


def test_a_busy_pool_answers_503_and_a_long_explanation_stops_at_its_deadline(
    home: Path,
) -> None:
    settings = Settings(home=home, tokens=TOKENS, explain_timeout_seconds=0.5)
    rows = np.random.default_rng(9).normal(size=(16, 12)).astype(np.float32)
    with TestClient(app=create_app(settings)) as client, ThreadPoolExecutor(2) as pool:  # type: ignore[arg-type]
        # Two wide explanations at once: one takes the only worker and runs past its
        # deadline; the other finds every worker busy.
        calls = [
            pool.submit(client.post, "/v1/models/mlp/explain", json=body(rows), headers=EXPLAINER)
            for _ in range(2)
        ]
        answers = sorted((c.result().status_code, c.result().json()["error"]) for c in calls)
        assert [status for status, _ in answers] == [503, 503]
        errors = " | ".join(error for _, error in answers)
        assert "every explanation worker is busy" in errors
        assert "took longer than explain_timeout_seconds (0.5 s)" in errors
        # The worker is free again once the stopped explanation has ended.
        small = client.post(
            "/v1/models/linear/explain", json=body(np.ones((1, 4))), headers=EXPLAINER
        )
        assert small.status_code == 200, small.text


def test_without_shap_an_explanation_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "shap", None)  # what `import shap` meets when it is absent
    with pytest.raises(ServiceUnavailableError, match=r"install driftgate\[explain\]"):
        load()
