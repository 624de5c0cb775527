"""Multivariate drift: a PCA of the reference, and each row's error reconstructing it.

A change in how features move together (a broken sensor that stops tracking its twin, a
new population with the same ranges) can leave every feature's distribution as it was; no
univariate test can see it. A PCA fitted on the standardized reference keeps the directions
the features vary along together; a row that no longer follows them is reconstructed badly
from its projection. The reconstruction error of each row is then one more numeric
"feature", binned against the reference's error distribution and judged like any other,
in the same panes, so it merges exactly across workers and replicas (NannyML's data
reconstruction drift, over the monitor's own windows).

The error distribution is profiled on reference rows the PCA was not fitted on: fitted rows
are reconstructed better than new ones, and would make drift-free traffic look worse.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import numpy.typing as npt

from registry.manifest import FeatureProfile, NumericProfile, PCAProfile

ERROR_FEATURE = "pca_reconstruction_error"
# Share of the standardized variance the kept components explain (NannyML's default): the
# rest, where correlated features cancel out, is where a broken correlation shows up.
EXPLAINED_VARIANCE = 0.65
MIN_ROWS = 100  # half fits the PCA and half profiles its error: 50 rows each at least
SEED = 0  # which reference rows fit and which profile: reproducible registrations

Floats = npt.NDArray[np.float64]


class PCAFit(NamedTuple):
    """A PCA fitted on half the reference, and its errors on the other half."""

    features: tuple[int, ...]  # indices of the features it covers
    mean: Floats
    scale: Floats
    components: Floats  # [kept, len(features)], orthonormal rows
    explained_variance: float  # share of the standardized variance the components keep
    held_out_errors: Floats  # reconstruction errors of the rows it was not fitted on


def fit_pca(
    features: Sequence[FeatureProfile], columns: Sequence[npt.NDArray[np.generic] | None]
) -> PCAFit | None:
    """Fit the PCA of the numeric features' reference columns on half the rows.

    Args:
        features: The features' reference profiles, in feature order.
        columns: Each feature's reference values as the model receives them, None for a
            categorical feature.

    Returns:
        None when there is nothing multivariate to watch: fewer than two varying numeric
        features, fewer than MIN_ROWS rows, or a feature already named ERROR_FEATURE.
    """
    if any(profile.name == ERROR_FEATURE for profile in features):
        return None
    used = [
        index
        for index, (profile, column) in enumerate(zip(features, columns, strict=True))
        if isinstance(profile, NumericProfile) and profile.std > 0 and column is not None
    ]
    if len(used) < 2:
        return None
    matrix = np.column_stack([np.asarray(columns[i], dtype=np.float64) for i in used])
    if matrix.shape[0] < MIN_ROWS:
        return None
    order = np.random.default_rng(SEED).permutation(matrix.shape[0])
    fit, held_out = matrix[order[::2]], matrix[order[1::2]]
    scale = np.nanstd(fit, axis=0)
    # A feature constant on the fitting half (a nearly empty pixel) cannot be standardized:
    # leave it to its univariate tests, and watch how the others move together.
    varying = np.flatnonzero(scale > 0)
    if varying.size < 2:
        return None
    used = [used[i] for i in varying.tolist()]
    fit, held_out, scale = fit[:, varying], held_out[:, varying], scale[varying]
    mean = np.nanmean(fit, axis=0)
    _, singular, directions = np.linalg.svd(_standardize(fit, mean, scale), full_matrices=False)
    shares = np.cumsum(singular**2) / np.sum(singular**2)
    kept = min(int(np.searchsorted(shares, EXPLAINED_VARIANCE)) + 1, len(used) - 1)
    components = directions[:kept]
    return PCAFit(
        features=tuple(used),
        mean=mean,
        scale=scale,
        components=components,
        explained_variance=float(shares[kept - 1]),
        held_out_errors=_rms_residual(_standardize(held_out, mean, scale), components),
    )


def reconstruction_errors(pca: PCAProfile, rows: Floats) -> Floats:
    """Each row's RMS error, in reference std, reconstructing it from its PCA projection.

    Args:
        pca: The fitted PCA, as the profile keeps it.
        rows: `[n, F]` feature rows in feature order (float64; NaN is missing).
    """
    picked = rows[:, list(pca.features)]
    standardized = _standardize(picked, np.array(pca.mean), np.array(pca.scale))
    return _rms_residual(standardized, np.array(pca.components))


def _standardize(rows: Floats, mean: Floats, scale: Floats) -> Floats:
    # A missing value sits at the mean (contributes no error); an infinite one is clipped
    # as the windows clip z-scores, so the error stays finite and lands in the top bin.
    return np.clip(np.nan_to_num((rows - mean) / scale, posinf=1e6, neginf=-1e6), -1e6, 1e6)


def _rms_residual(standardized: Floats, components: Floats) -> Floats:
    residual = standardized - (standardized @ components.T) @ components
    errors: Floats = np.sqrt(np.mean(residual**2, axis=1))
    return errors
