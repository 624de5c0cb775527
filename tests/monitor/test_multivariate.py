"""Multivariate drift: the PCA reconstruction error sees a change of correlation alone."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from sklearn.datasets import load_breast_cancer, load_digits

from monitor import DriftDetector
from monitor.drift import MonitorConfig, Sample, VersionWatch
from registry import ModelRegistry
from registry.manifest import Manifest
from registry.multivariate import ERROR_FEATURE, fit_pca
from registry.profile import profile_series
from tests.models import passthrough_model

DATA = load_breast_cancer().data  # 569 rows of 30 strongly correlated measurements
ORDER = np.random.default_rng(7).permutation(len(DATA))
REFERENCE, LIVE = DATA[ORDER[:300]], DATA[ORDER[300:]]


@pytest.fixture(scope="module")
def manifest(tmp_path_factory: pytest.TempPathFactory) -> Manifest:
    root = tmp_path_factory.mktemp("multivariate")
    frame = pl.DataFrame(REFERENCE, schema=[f"f{i}" for i in range(30)], orient="row")
    frame.write_csv(root / "reference.csv")
    return ModelRegistry(root / "models").register(
        "cells", passthrough_model(root / "model.onnx"), root / "reference.csv"
    )


def judge(manifest: Manifest, rows: np.ndarray):  # type: ignore[no-untyped-def]
    """The input verdict on `rows` sent as FP32 requests, through the monitor's own path."""
    watch = VersionWatch(manifest, MonitorConfig(capacity=len(rows)))
    served = rows.astype(np.float32)
    watch.add([Sample("cells", 1, {"x": served}, {"y": served}, None)])
    return DriftDetector().evaluate(watch.inputs.statistics(), rows_seen=len(rows))


def test_the_profile_keeps_a_pca_fitted_apart_from_its_error_profile(manifest: Manifest) -> None:
    pca = manifest.profile.multivariate
    assert pca is not None
    assert pca.features == tuple(range(30))
    assert 0.65 <= pca.explained_variance < 1.0
    assert 1 <= len(pca.components) < 30
    assert pca.error.name == ERROR_FEATURE
    assert pca.error.count == 150  # the half of the reference the PCA was not fitted on


def test_clean_rows_are_ok_including_the_reconstruction_error(manifest: Manifest) -> None:
    assessment = judge(manifest, LIVE)
    assert [f.name for f in assessment.features][-1] == ERROR_FEATURE
    assert assessment.status == "ok", [f.reason for f in assessment.features if f.status != "ok"]


def test_a_correlation_break_is_caught_only_by_the_reconstruction_error(
    manifest: Manifest,
) -> None:
    """Each column shuffled on its own: every marginal is exactly the clean window's."""
    rng = np.random.default_rng(8)
    broken = np.column_stack([rng.permutation(column) for column in LIVE.T])
    assessment = judge(manifest, broken)
    flagged = {f.name: f for f in assessment.features if f.status != "ok"}
    assert set(flagged) == {ERROR_FEATURE}
    error = flagged[ERROR_FEATURE]
    assert error.status == "warn"  # significant; drift needs a window of fresh rows
    assert error.large
    assert error.effects["mean_shift"] > 1.0  # reconstruction is much worse


def test_features_constant_on_the_fitting_half_are_left_out_not_the_pca() -> None:
    """Digits: pixels that are all but always 0 are constant on half the reference."""
    digits = load_digits().data
    profiles = [profile_series(pl.Series(f"p{i}", column)) for i, column in enumerate(digits.T)]
    fitted = fit_pca(profiles, list(digits.T))
    assert fitted is not None
    covered = set(fitted.features)
    varying = {i for i, column in enumerate(digits.T) if column.std() > 0}
    assert covered < varying  # some varying pixels are constant on the fitting half
    assert len(covered) > 40
