"""Profiles describe the values the model receives, not the reference file's own values."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest
from sklearn.datasets import load_diabetes, load_wine

from monitor import DriftDetector, DriftWindow
from registry import ModelRegistry
from registry.manifest import NumericProfile
from tests.models import passthrough_model


@pytest.mark.parametrize("load", [load_wine, load_diabetes], ids=["wine", "diabetes"])
def test_float32_requests_match_a_float64_csv_reference(tmp_path: Path, load: object) -> None:
    """Real, tied float64 data registered from CSV, replayed as FP32 requests: no drift.

    Many reference values sit exactly on a quantile edge; rounded to float32 they fall on
    the other side of a float64 edge, so a profile of the file's values saw 4-45% of values
    per feature move bins on traffic identical to the reference.
    """
    data = load(as_frame=False).data  # type: ignore[operator]
    frame = pl.DataFrame(data, schema=[f"f{i}" for i in range(data.shape[1])], orient="row")
    assert frame.dtypes[0] == pl.Float64
    frame.write_csv(tmp_path / "reference.csv")
    manifest = ModelRegistry(tmp_path / "models").register(
        "tied", passthrough_model(tmp_path / "model.onnx"), tmp_path / "reference.csv"
    )
    served = data.astype(np.float32).astype(np.float64)  # what an FP32 client sends
    window = DriftWindow(manifest.profile.features, capacity=len(served))
    window.update(served)
    statistics = window.statistics()
    assessment = DriftDetector().evaluate(statistics, rows_seen=len(served))
    assert assessment.status == "ok", [f for f in assessment.features if f.status != "ok"]
    # The very rows of the reference: every bin holds exactly its reference count.
    for profile, feature in zip(manifest.profile.features, statistics, strict=True):
        assert isinstance(profile, NumericProfile)
        assert feature.ks == 0.0, feature.name
