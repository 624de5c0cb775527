"""The bundled demo model: a wine classifier trained at first run from scikit-learn's data.

Needs the `demo` extra (scikit-learn, skl2onnx); `make serve` installs it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl

from registry import Manifest, ModelRegistry

DEMO_MODEL = "demo"


def train_demo_model(directory: Path, *, seed: int = 0, broken: bool = False) -> tuple[Path, Path]:
    """Train the wine classifier; writes `model.onnx` and its reference `wine.parquet`.

    `broken` trains on shuffled labels: a model that serves fine and predicts nonsense.
    (Every version's reference data carries the true labels.)

    The model takes one input `input` of shape [batch, 13] (FP32) and gives `label` (INT64)
    and `probabilities` (FP32, [batch, 3]).
    """
    from skl2onnx import to_onnx
    from skl2onnx.common.data_types import FloatTensorType
    from sklearn.datasets import load_wine
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import train_test_split
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    wine = load_wine()
    features = wine.data.astype("float32")
    train, _, target, _ = train_test_split(
        features, wine.target, test_size=0.25, random_state=seed, stratify=wine.target
    )
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
    labels = np.random.default_rng(seed).permutation(target) if broken else target
    model.fit(train, labels)
    onnx = to_onnx(
        model,
        initial_types=[("input", FloatTensorType([None, features.shape[1]]))],
        options={"zipmap": False},
        target_opset={"": 17, "ai.onnx.ml": 3},
    )
    directory.mkdir(parents=True, exist_ok=True)
    model_path = directory / "model.onnx"
    model_path.write_bytes(onnx.SerializeToString())
    reference_path = directory / "wine.parquet"
    reference = pl.DataFrame(train, schema=list(wine.feature_names), orient="row")
    reference.with_columns(target=pl.Series(target)).write_parquet(reference_path)
    return model_path, reference_path


def ensure_demo_model(registry: ModelRegistry, workdir: Path) -> Manifest | None:
    """Register the demo model when the registry is empty; returns its manifest if it did."""
    if registry.models():
        return None
    model_path, reference_path = train_demo_model(workdir)
    return registry.register(
        DEMO_MODEL,
        model_path,
        reference_path,
        target="target",
        description="Wine cultivar classifier (scikit-learn logistic regression), the demo model",
        tags={"dataset": "sklearn-wine", "framework": "scikit-learn"},
        owner="driftgate-demo",
        actor="driftgate",
    )
