"""Model quality: reference accuracy and confidence calibration at registration, realized and
estimated accuracy in the served app, and the estimate checked against real labels under a
real covariate shift (statsmodels' `fair` data, shorter marriages against longer ones)."""

from __future__ import annotations

import math
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import msgspec
import numpy as np
import onnxruntime as ort
import polars as pl
import pytest
from litestar.testing import TestClient

from gateway.app import create_app
from gateway.settings import Settings
from monitor.traffic import WIDTH, TrafficPanes, outcomes
from registry import Manifest, ModelRegistry
from registry.manifest import decode_manifest, encode_manifest
from registry.quality import expected_accuracy, isotonic_fit
from tests.conftest import LABELLER, TOKENS, RedisServer, running_gateway
from tests.test_metrics import value

Client = TestClient[Any]
FEATURES = [
    "rate_marriage",
    "age",
    "yrs_married",
    "children",
    "religious",
    "educ",
    "occupation",
    "occupation_husb",
]
TARGET = "affair"
SHORT = 6.0  # years married: the reference population is at most this, the live one longer
# Live windows by years married, the first like the reference (held-out shorter marriages).
WINDOWS = [(0.0, 6.0), (6.0, 9.0), (9.0, 13.0), (13.0, 16.5), (16.5, 23.0), (6.0, 23.0)]


class Fair(msgspec.Struct, frozen=True, kw_only=True):
    """The fair data set split for one experiment (row indices into `features`)."""

    features: np.ndarray  # float32 [rows, 8]
    target: np.ndarray  # int64: any affairs
    years: np.ndarray  # years married, the covariate that shifts
    reference: np.ndarray  # held out from training, shorter marriages only
    live: np.ndarray  # held out from training and reference, every population


def load_fair(seed: int = 0) -> Fair:
    """Train on a random 40% of all couples; hold out 20% for the reference (keeping the
    shorter marriages) and 40% for live traffic."""
    from statsmodels.datasets import fair

    data = pl.from_pandas(fair.load_pandas().data)
    features = data.select(FEATURES).to_numpy().astype(np.float32)
    years = data.get_column("yrs_married").to_numpy()
    order = np.random.default_rng(seed).permutation(len(features))
    train_end, reference_end = int(0.4 * len(order)), int(0.6 * len(order))
    held_out = order[train_end:reference_end]
    return Fair(
        features=features,
        target=(data.get_column("affairs").to_numpy() > 0).astype(np.int64),
        years=years,
        reference=held_out[years[held_out] <= SHORT],
        live=order[reference_end:],
    )


@pytest.fixture(scope="module")
def fair_data() -> Fair:
    return load_fair()


@pytest.fixture(scope="module")
def fair_files(tmp_path_factory: pytest.TempPathFactory, fair_data: Fair) -> tuple[Path, Path]:
    """A logistic regression exported by skl2onnx (`label`, `probabilities`), and its held-out
    reference with the target."""
    from skl2onnx import to_onnx
    from skl2onnx.common.data_types import FloatTensorType
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    root = tmp_path_factory.mktemp("fair")
    train = np.setdiff1d(
        np.arange(len(fair_data.target)), np.concatenate([fair_data.reference, fair_data.live])
    )
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
    model.fit(fair_data.features[train], fair_data.target[train])
    onnx = to_onnx(
        model,
        initial_types=[("input", FloatTensorType([None, len(FEATURES)]))],
        options={"zipmap": False},
        target_opset={"": 17, "ai.onnx.ml": 3},
    )
    model_path = root / "fair.onnx"
    model_path.write_bytes(onnx.SerializeToString())
    reference_path = root / "reference.parquet"
    frame = pl.DataFrame(fair_data.features[fair_data.reference], schema=FEATURES, orient="row")
    frame.with_columns(pl.Series(TARGET, fair_data.target[fair_data.reference])).write_parquet(
        reference_path
    )
    return model_path, reference_path


@pytest.fixture
def fair_home(tmp_path: Path, fair_files: tuple[Path, Path]) -> Path:
    """A data directory whose registry holds the fair classifier, version 1."""
    ModelRegistry(tmp_path / "models").register("fair", *fair_files, target=TARGET, owner="tests")
    return tmp_path


def predict(model_path: Path, rows: np.ndarray) -> dict[str, np.ndarray]:
    session = ort.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])
    label, probabilities = session.run(None, {"input": rows})
    return {"label": label, "probabilities": probabilities}


class Figures(msgspec.Struct, frozen=True):
    """One window: estimated accuracy, its sampling error, and the realized accuracy."""

    rows: int
    estimated: float
    error: float
    realized: float


def window_figures(manifest: Manifest, model_path: Path, fair: Fair, rows: np.ndarray) -> Figures:
    assert manifest.quality is not None
    assert manifest.quality.calibration is not None
    outputs = predict(model_path, fair.features[rows])
    expected = expected_accuracy(manifest.quality.calibration, outputs["probabilities"])
    return Figures(
        rows=rows.size,
        estimated=float(expected.mean()),
        error=math.sqrt(float((expected * (1 - expected)).sum())) / rows.size,
        realized=float((outputs["label"] == fair.target[rows]).mean()),
    )


def in_window(fair: Fair, low: float, high: float) -> np.ndarray:
    years = fair.years[fair.live]
    return fair.live[(years > low) & (years <= high)]


# --- the calibration itself -----------------------------------------------------------------


def test_isotonic_fit_is_scikit_learns_isotonic_regression() -> None:
    from sklearn.isotonic import IsotonicRegression

    rng = np.random.default_rng(4)
    x = np.round(rng.uniform(0.5, 1.0, 3000), 3)  # rounded: many ties
    y = (rng.uniform(size=x.size) < x**2).astype(np.float64)
    knots, fitted = isotonic_fit(x, y)
    assert np.all(np.diff(knots) > 0)
    assert np.all(np.diff(fitted) >= 0)
    grid = np.linspace(0.3, 1.2, 2001)  # beyond both ends: clamped
    expected = IsotonicRegression(out_of_bounds="clip").fit(x, y).predict(grid)
    np.testing.assert_allclose(np.interp(grid, knots, fitted), expected, atol=1e-12)
    # Pooled blocks keep their means: on its own data the fit averages to the observed rate.
    assert np.interp(x, knots, fitted).mean() == pytest.approx(y.mean(), abs=1e-12)


# --- registration ---------------------------------------------------------------------------


def test_registration_records_accuracy_and_a_calibration(
    tmp_path: Path, fair_files: tuple[Path, Path], fair_data: Fair
) -> None:
    registry = ModelRegistry(tmp_path)
    manifest = registry.register("fair", *fair_files, target=TARGET)
    quality = manifest.quality
    assert quality is not None
    assert (quality.task, quality.prediction, quality.rows) == (
        "classification",
        "label",
        fair_data.reference.size,
    )
    assert quality.calibration is not None
    assert quality.calibration.probabilities == "probabilities"
    outputs = predict(fair_files[0], fair_data.features[fair_data.reference])
    realized = (outputs["label"] == fair_data.target[fair_data.reference]).mean()
    assert quality.accuracy == pytest.approx(realized, abs=1e-12)
    # On the reference itself the estimate is the reference accuracy (isotonic block means).
    expected = expected_accuracy(quality.calibration, outputs["probabilities"])
    assert expected.mean() == pytest.approx(realized, abs=1e-9)
    assert registry.manifest("fair", 1) == manifest


def test_manifests_without_quality_still_decode(
    tmp_path: Path, fair_files: tuple[Path, Path]
) -> None:
    manifest = ModelRegistry(tmp_path).register("fair", *fair_files, target=TARGET)
    fields = msgspec.json.decode(encode_manifest(manifest))
    del fields["quality"]  # as written before quality existed
    old = decode_manifest(msgspec.json.encode(fields))
    assert old.quality is None
    assert msgspec.structs.replace(old, quality=manifest.quality) == manifest


def test_regressors_get_their_mae_and_no_target_gets_nothing(
    tmp_path: Path, artifacts: Path
) -> None:
    registry = ModelRegistry(tmp_path)
    affine = registry.register(
        "affine", artifacts / "affine.onnx", artifacts / "affine.parquet", target="label"
    )
    reference = pl.read_parquet(artifacts / "affine.parquet")
    # affine's first output is y = x + 1; label feedback scores its first column
    mae = (reference["label"].cast(pl.Float64) - (reference["f0"].cast(pl.Float64) + 1)).abs()
    assert affine.quality is not None
    assert (affine.quality.task, affine.quality.prediction) == ("regression", "y")
    assert affine.quality.mae == pytest.approx(mae.mean(), rel=1e-6)
    assert affine.quality.calibration is None
    lookup = registry.register("lookup", artifacts / "lookup.onnx", artifacts / "lookup.csv")
    assert lookup.quality is None  # no --target


def test_decision_scores_are_not_calibrated_as_probabilities(
    tmp_path: Path, fair_data: Fair
) -> None:
    from skl2onnx import to_onnx
    from skl2onnx.common.data_types import FloatTensorType
    from sklearn.linear_model import LogisticRegression

    rows, target = fair_data.features[fair_data.live], fair_data.target[fair_data.live]
    onnx = to_onnx(
        LogisticRegression(max_iter=1000).fit(rows, target),
        initial_types=[("input", FloatTensorType([None, len(FEATURES)]))],
        options={"zipmap": False, "raw_scores": True},  # `probabilities` holds margins
        target_opset={"": 17, "ai.onnx.ml": 3},
    )
    model_path = tmp_path / "scores.onnx"
    model_path.write_bytes(onnx.SerializeToString())
    reference_path = tmp_path / "reference.parquet"
    frame = pl.DataFrame(fair_data.features[fair_data.reference], schema=FEATURES, orient="row")
    frame.with_columns(pl.Series(TARGET, fair_data.target[fair_data.reference])).write_parquet(
        reference_path
    )
    quality = (
        ModelRegistry(tmp_path / "models")
        .register("scores", model_path, reference_path, target=TARGET)
        .quality
    )
    assert quality is not None
    assert quality.accuracy is not None
    assert quality.calibration is None


# --- validation under a real covariate shift ------------------------------------------------


def test_estimate_follows_realized_accuracy_under_covariate_shift(
    tmp_path: Path, fair_files: tuple[Path, Path], fair_data: Fair
) -> None:
    manifest = ModelRegistry(tmp_path).register("fair", *fair_files, target=TARGET)
    assert manifest.quality is not None
    assert manifest.quality.accuracy is not None
    reference_accuracy = manifest.quality.accuracy
    figures = [
        window_figures(manifest, fair_files[0], fair_data, in_window(fair_data, low, high))
        for low, high in WINDOWS
    ]
    for (low, high), window in zip(WINDOWS, figures, strict=True):
        assert window.rows >= 200, (low, high)
        # Sampling error plus the calibration's own (a reference of ~1,000 rows adds about
        # 0.013): within 3 of these sampling errors, or 0.05 where the windows are small.
        assert abs(window.estimated - window.realized) <= max(3 * window.error, 0.05), (
            low,
            high,
            window,
        )
    shifted = figures[1:]
    # Longer marriages are harder for this model; the estimate sees the drop without labels
    assert all(w.realized < reference_accuracy - 0.05 for w in shifted)
    assert all(w.estimated < reference_accuracy - 0.03 for w in shifted)
    # and is much closer to the truth than assuming the reference accuracy still holds.
    estimate_error = np.mean([abs(w.estimated - w.realized) for w in shifted])
    unchanged_error = np.mean([abs(reference_accuracy - w.realized) for w in shifted])
    assert estimate_error < 0.5 * unchanged_error


# --- the served app -------------------------------------------------------------------------

FAST = {
    "sample_rate": 1.0,
    "drift_interval_seconds": 0.2,
    "drift_pane_seconds": 1.0,
    "tokens": TOKENS,  # labels need a token that may send them
}


def infer_and_label(
    client: httpx.Client | Client, fair: Fair, rows: np.ndarray, prefix: str
) -> None:
    """Send rows, ten per request, then their labels as feedback."""
    items = []
    for start in range(0, rows.size, 10):
        batch = rows[start : start + 10]
        request_id = f"{prefix}-{start}"
        matrix = fair.features[batch]
        body = {
            "id": request_id,
            "inputs": [
                {
                    "name": "input",
                    "shape": list(matrix.shape),
                    "datatype": "FP32",
                    "data": matrix.reshape(-1).tolist(),
                }
            ],
        }
        assert client.post("/v2/models/fair/infer", json=body).status_code == 200
        items.append({"id": request_id, "label": fair.target[batch].tolist()})
    send_feedback(client, items)


def send_feedback(client: httpx.Client | Client, items: list[dict[str, Any]]) -> None:
    """Post labels until every one is joined: the monitor remembers a sampled prediction
    off the request path, so a label may arrive before its prediction is remembered."""
    deadline = time.monotonic() + 20
    while items:
        result = client.post("/v1/feedback", json={"items": items}, headers=LABELLER).json()
        assert (result["expired"], result["invalid"]) == ([], []), result
        items = [item for item in items if item["id"] in set(result["unknown"])]
        assert time.monotonic() < deadline, result
        time.sleep(0.05 if items else 0)


def wait_for_quality(client: httpx.Client | Client, done: Any) -> dict[str, Any]:
    deadline = time.monotonic() + 30
    while True:
        response = client.get("/v1/models/fair/versions/1/drift")
        if response.status_code == 200 and done(response.json()["quality"]):
            quality: dict[str, Any] = response.json()["quality"]
            return quality
        assert time.monotonic() < deadline, response.text
        time.sleep(0.1)


def test_served_quality_matches_the_offline_figures(
    fair_home: Path, fair_files: tuple[Path, Path], fair_data: Fair
) -> None:
    rows = in_window(fair_data, 6.0, 23.0)
    manifest = ModelRegistry(fair_home / "models").manifest("fair", 1)
    offline = window_figures(manifest, fair_files[0], fair_data, rows)
    with TestClient(app=create_app(Settings(home=fair_home, **FAST))) as client:  # type: ignore[arg-type]
        infer_and_label(client, fair_data, rows, "r")
        quality = wait_for_quality(client, lambda q: q["labelled"] == rows.size)
        text = client.get("/metrics").text
    assert quality["task"] == "classification"
    assert quality["estimable"] is True
    assert quality["estimated_rows"] == rows.size
    assert quality["estimated_accuracy"] == pytest.approx(offline.estimated, abs=1e-9)
    assert quality["estimated_accuracy_error"] == pytest.approx(offline.error, abs=1e-9)
    assert quality["realized_accuracy"] == pytest.approx(offline.realized, abs=1e-12)
    binomial = math.sqrt(offline.realized * (1 - offline.realized) / rows.size)
    assert quality["realized_accuracy_error"] == pytest.approx(binomial, rel=1e-9)
    assert quality["reference_accuracy"] == manifest.quality.accuracy  # type: ignore[union-attr]
    assert quality["realized_mae"] is None

    labels = {"model": "fair", "version": "1"}
    for kind in ("estimated", "realized", "reference"):
        key = f"{kind}_accuracy"
        figure = value(text, "driftgate_model_accuracy", **labels, kind=kind)
        assert figure == pytest.approx(quality[key]), kind
    assert value(
        text, "driftgate_model_accuracy_standard_error", **labels, kind="estimated"
    ) == pytest.approx(offline.error)
    assert value(text, "driftgate_model_quality_rows", **labels, kind="realized") == rows.size
    assert value(text, "driftgate_model_quality_rows", **labels, kind="estimated") == rows.size


def test_regressor_quality_is_its_mae(home: Path) -> None:
    rows = np.random.default_rng(5).normal(size=(40, 4)).astype(np.float32)
    with TestClient(app=create_app(Settings(home=home, **FAST))) as client:  # type: ignore[arg-type]
        for index, row in enumerate(rows):
            body = {
                "id": f"a{index}",
                "inputs": [
                    {"name": "x", "shape": [1, 4], "datatype": "FP32", "data": row.tolist()}
                ],
            }
            assert client.post("/v2/models/affine/infer", json=body).status_code == 200
        send_feedback(client, [{"id": f"a{index}", "label": 0.0} for index in range(len(rows))])
        deadline = time.monotonic() + 20
        while True:
            report = client.get("/v1/models/affine/versions/2/drift").json()
            if report.get("quality", {}).get("labelled") == len(rows):
                break
            assert time.monotonic() < deadline
            time.sleep(0.1)
        text = client.get("/metrics").text
    quality = report["quality"]
    errors = np.abs(rows[:, 0].astype(np.float64) + 2.0)  # v2: y = x + 2; labels are 0
    assert quality["task"] == "regression"
    assert quality["estimable"] is False
    assert quality["realized_mae"] == pytest.approx(errors.mean(), rel=1e-6)
    assert quality["realized_mae_error"] == pytest.approx(
        errors.std() / math.sqrt(len(rows)), rel=1e-5
    )
    assert quality["realized_accuracy"] is None
    labels = {"model": "affine", "version": "2"}
    assert value(text, "driftgate_model_mae", **labels, kind="realized") == pytest.approx(
        errors.mean(), rel=1e-6
    )
    assert value(text, "driftgate_model_mae", **labels, kind="reference") is not None
    assert value(text, "driftgate_model_accuracy", **labels, kind="estimated") is None


# --- merging across processes ---------------------------------------------------------------


def test_panes_of_several_processes_add_up_exactly() -> None:
    first = TrafficPanes(pane_seconds=60.0, max_panes=5)
    second = TrafficPanes(pane_seconds=60.0, max_panes=5)
    first.record_estimates("m", 1, np.array([0.9, 0.6]))
    second.record_estimates("m", 1, np.array([0.75]))
    first.record_label("m", 1, True, 0.0)
    second.record_label("m", 1, False, 0.0)
    merged = outcomes([*first.own("m", 1).values(), *second.own("m", 1).values()])
    assert (merged.estimated_rows, merged.labelled, merged.correct) == (3, 2, 1)
    assert merged.estimated_accuracy == pytest.approx(0.75)
    variance = 0.9 * 0.1 + 0.6 * 0.4 + 0.75 * 0.25
    assert merged.estimated_accuracy_error == pytest.approx(math.sqrt(variance) / 3)
    # A process of an older release writes only the leading columns: it still adds.
    (pane,) = first.own("m", 1).values()
    older = np.frombuffer(pane, dtype="<f8")[: WIDTH - 4].tobytes()
    mixed = outcomes([older, *second.own("m", 1).values()])
    assert (mixed.labelled, mixed.estimated_rows) == (2, 1)


@pytest.mark.e2e
def test_two_gateways_on_one_redis_report_all_quality(
    fair_home: Path, fair_files: tuple[Path, Path], fair_data: Fair, redis_server: RedisServer
) -> None:
    environ = {
        "DRIFTGATE_REDIS_URL": redis_server.url,
        "DRIFTGATE_SAMPLE_RATE": "1",
        "DRIFTGATE_DRIFT_INTERVAL_SECONDS": "0.2",
        "DRIFTGATE_DRIFT_PANE_SECONDS": "1",
    }
    rows = in_window(fair_data, 6.0, 23.0)
    half = rows.size // 2
    manifest = ModelRegistry(fair_home / "models").manifest("fair", 1)
    offline = window_figures(manifest, fair_files[0], fair_data, rows)
    with (
        running_gateway(fair_home, **environ) as first,
        running_gateway(fair_home, **environ) as second,
        httpx.Client(base_url=first) as one,
        httpx.Client(base_url=second) as two,
    ):
        infer_and_label(one, fair_data, rows[:half], "one")  # labels go where the call went
        infer_and_label(two, fair_data, rows[half:], "two")
        for client in (one, two):  # each reports the rows and labels of both
            quality = wait_for_quality(
                client, lambda q: q["labelled"] == rows.size and q["estimated_rows"] == rows.size
            )
            assert quality["estimated_accuracy"] == pytest.approx(offline.estimated, abs=1e-9)
            assert quality["realized_accuracy"] == pytest.approx(offline.realized, abs=1e-12)
        cli = subprocess.run(
            [sys.executable, "-m", "gateway", "drift", "fair", "--url", first],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    assert cli.returncode == 0, cli.stderr
    assert f"realized {offline.realized:.3f}" in cli.stdout
    assert f"estimated {offline.estimated:.3f}" in cli.stdout
    assert f"({rows.size} rows)" in cli.stdout
