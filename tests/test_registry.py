"""The registry: immutable numbered versions, manifests, profiles, integrity."""

from __future__ import annotations

import hashlib
import os
import stat
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from registry import (
    CategoricalProfile,
    IntegrityError,
    InvalidModelError,
    InvalidNameError,
    InvalidReferenceError,
    ModelNotFoundError,
    ModelRegistry,
    NumericProfile,
)


def test_versions_are_numbered_and_manifest_records_everything(
    tmp_path: Path, artifacts: Path
) -> None:
    registry = ModelRegistry(tmp_path)
    first = registry.register(
        "affine",
        artifacts / "affine.onnx",
        artifacts / "affine.parquet",
        target="label",
        description="first",
        tags={"team": "risk"},
        metrics={"auc": 0.91},
        owner="risk-team",
        actor="alice",
    )
    second = registry.register(
        "affine", artifacts / "affine_v2.onnx", artifacts / "affine.csv", target="label"
    )

    assert (first.version, second.version) == (1, 2)
    assert second.parent_version == 1
    assert registry.versions("affine") == [1, 2]
    assert registry.models() == ["affine"]
    assert registry.manifest("affine") == second
    assert registry.manifest("affine", 1) == first
    model_bytes = (artifacts / "affine.onnx").read_bytes()
    assert first.sha256 == hashlib.sha256(model_bytes).hexdigest()
    assert first.size_bytes == len(model_bytes)
    assert (first.created_by, first.owner, first.description) == ("alice", "risk-team", "first")
    assert (first.tags, first.metrics) == ({"team": "risk"}, {"auc": 0.91})
    assert [(s.name, s.datatype, s.shape) for s in first.signature.inputs] == [
        ("x", "FP32", (-1, 4))
    ]
    assert [s.name for s in first.signature.outputs] == ["y", "total"]
    assert first.features.layout == "matrix"
    assert first.features.names == ("f0", "f1", "f2", "f3")
    reference = (artifacts / "affine.parquet").read_bytes()
    assert first.training_data.sha256 == hashlib.sha256(reference).hexdigest()
    assert first.training_data.rows == 500
    assert first.training_data.schema["f0"] == "Float32"
    assert second.training_data.filename == "affine.csv"


def test_numeric_profile_matches_the_reference_data(tmp_path: Path, artifacts: Path) -> None:
    manifest = ModelRegistry(tmp_path).register(
        "affine", artifacts / "affine.onnx", artifacts / "affine.parquet", target="label"
    )
    data = pl.read_parquet(artifacts / "affine.parquet")
    feature = manifest.profile.features[0]
    assert isinstance(feature, NumericProfile)
    values = data.get_column("f0").to_numpy().astype(np.float64)
    assert feature.count == 500
    assert feature.missing_rate == 0.0
    assert feature.mean == pytest.approx(values.mean())
    assert feature.std == pytest.approx(values.std())
    assert (feature.min, feature.max) == pytest.approx((values.min(), values.max()))
    assert sum(feature.fine_counts) == sum(feature.coarse_counts) == 500
    assert len(feature.fine_counts) == len(feature.fine_edges) + 1 == 100
    assert len(feature.coarse_counts) == 10
    assert max(feature.coarse_counts) - min(feature.coarse_counts) <= 1  # equal-mass bins
    outputs = {profile.name: profile for profile in manifest.profile.outputs}
    assert set(outputs) == {"y[0]", "y[1]", "y[2]", "y[3]", "total"}
    shifted = outputs["y[0]"]
    assert isinstance(shifted, NumericProfile)
    assert shifted.mean == pytest.approx(values.mean() + 1.0, rel=1e-5)


def test_categorical_features_and_missing_values(tmp_path: Path, artifacts: Path) -> None:
    reference = tmp_path / "identity.parquet"
    frame = pl.read_parquet(artifacts / "identity.parquet")
    frame.with_columns(
        in_fp64=pl.when(pl.int_range(pl.len()) < 10).then(None).otherwise(pl.col("in_fp64"))
    ).write_parquet(reference)
    manifest = ModelRegistry(tmp_path / "models").register(
        "identity", artifacts / "identity.onnx", reference
    )
    assert manifest.features.layout == "columns"
    profiles = {profile.name: profile for profile in manifest.profile.features}
    strings = profiles["in_bytes"]
    assert isinstance(strings, CategoricalProfile)
    assert strings.frequencies == {f"s{i}": 10 for i in range(5)}
    assert profiles["in_fp64"].missing_rate == pytest.approx(10 / 50)
    labels = {profile.name: profile for profile in manifest.profile.outputs}["out_bool"]
    assert isinstance(labels, CategoricalProfile)
    assert labels.frequencies == {"true": 25, "false": 25}


def test_versions_are_read_only_on_disk(tmp_path: Path, artifacts: Path) -> None:
    ModelRegistry(tmp_path).register(
        "affine", artifacts / "affine.onnx", artifacts / "affine.parquet", target="label"
    )
    for path in [
        tmp_path / "affine" / "1" / "model.onnx",
        tmp_path / "affine" / "1" / "manifest.json",
    ]:
        assert not os.stat(path).st_mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH)


def test_concurrent_registrations_get_distinct_versions(tmp_path: Path, artifacts: Path) -> None:
    registry = ModelRegistry(tmp_path)

    def register(_: int) -> int:
        return registry.register(
            "affine", artifacts / "affine.onnx", artifacts / "affine.parquet", target="label"
        ).version

    with ThreadPoolExecutor(4) as pool:
        versions = sorted(pool.map(register, range(8)))
    assert versions == list(range(1, 9))
    assert registry.versions("affine") == versions
    assert not [p for p in (tmp_path / "affine").iterdir() if p.name.startswith(".")]


def test_tampered_artifact_is_refused(tmp_path: Path, artifacts: Path) -> None:
    registry = ModelRegistry(tmp_path)
    registry.register(
        "affine", artifacts / "affine.onnx", artifacts / "affine.parquet", target="label"
    )
    artifact = tmp_path / "affine" / "1" / "model.onnx"
    artifact.chmod(0o644)
    artifact.write_bytes((artifacts / "affine_v2.onnx").read_bytes())
    with pytest.raises(IntegrityError, match="modified and is refused"):
        registry.load_artifact("affine", 1)


@pytest.mark.parametrize(
    "name", ["../escape", "a/b", ".hidden", "", "x" * 64, "a\\b", "..", "name with space"]
)
def test_unsafe_model_names_are_refused(tmp_path: Path, artifacts: Path, name: str) -> None:
    with pytest.raises(InvalidNameError, match="invalid model name"):
        ModelRegistry(tmp_path).register(
            name, artifacts / "affine.onnx", artifacts / "affine.parquet"
        )
    assert not any(tmp_path.iterdir())


def test_reference_that_does_not_fit_is_refused(tmp_path: Path, artifacts: Path) -> None:
    registry = ModelRegistry(tmp_path)
    with pytest.raises(InvalidReferenceError, match="4 features but the reference data has 5"):
        registry.register("affine", artifacts / "affine.onnx", artifacts / "affine.parquet")
    with pytest.raises(InvalidReferenceError, match="target column 'nope'"):
        registry.register(
            "affine", artifacts / "affine.onnx", artifacts / "affine.parquet", target="nope"
        )
    with pytest.raises(InvalidReferenceError, match=r"\.parquet or \.csv"):
        registry.register("affine", artifacts / "affine.onnx", artifacts / "affine.onnx")
    with pytest.raises(InvalidReferenceError, match="no column of that name"):
        registry.register("lookup", artifacts / "lookup.onnx", artifacts / "affine.csv")
    assert registry.models() == []


def test_unreadable_model_is_refused(tmp_path: Path, artifacts: Path) -> None:
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"not an onnx model")
    with pytest.raises(InvalidModelError, match="cannot load the model"):
        ModelRegistry(tmp_path / "models").register("x", garbage, artifacts / "affine.parquet")


def test_unknown_models_and_versions(tmp_path: Path, artifacts: Path) -> None:
    registry = ModelRegistry(tmp_path)
    with pytest.raises(ModelNotFoundError, match="'affine' is not registered"):
        registry.manifest("affine")
    registry.register(
        "affine", artifacts / "affine.onnx", artifacts / "affine.parquet", target="label"
    )
    with pytest.raises(ModelNotFoundError, match="no version 7"):
        registry.manifest("affine", 7)
    with pytest.raises(InvalidNameError, match="positive integers"):
        registry.manifest("affine", "1.0")
