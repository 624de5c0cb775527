"""Quality on the reference data, and the calibration that estimates accuracy without labels.

At registration the model has already run on the reference data; with a target column we
record its accuracy (classifiers) or mean absolute error (regressors) there, the baseline
live quality is compared with. For a classifier that also gives class probabilities we fit
how often it was right at each confidence (its highest class probability): averaged over
live rows, that calibrated confidence estimates live accuracy before any label arrives
(confidence-based performance estimation, CBPE, as NannyML does it).

The map is an isotonic regression (pool-adjacent-violators) of "right" on confidence rather
than a histogram over quantile bins: it has no bin count to choose, follows the data where
it is dense, and is monotone by construction (a more confident prediction is never expected
to be worse), which bins over few rows do not guarantee. Its block means reproduce the
reference accuracy exactly. Like any calibration it holds only under covariate shift (the
chance of being right at a given confidence does not change) and only if the reference was
held out from training: on training rows a model looks surer of itself than it should.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import numpy.typing as npt
import polars as pl

from registry.manifest import ConfidenceCalibration, QualityProfile, TensorSpec

Floats = npt.NDArray[np.float64]
# A probabilities row must sum to one within this (float32 softmax rounding); decision
# scores or log-probabilities fail it and get no estimator.
SUM_TOLERANCE = 1e-3


def build_quality(
    target: pl.Series, outputs: Mapping[str, np.ndarray], specs: tuple[TensorSpec, ...]
) -> QualityProfile | None:
    """The version's quality on the reference rows that have a target, or None when no row
    has one or the target cannot be compared with the prediction."""
    present = target.is_not_null().to_numpy()
    if not present.any():
        return None
    label = _label_output(outputs, specs)
    if label is None:
        return _regression(target, present, outputs, specs[0].name)
    correct = _equal(target.filter(pl.Series(present)), outputs[label].reshape(-1)[present])
    probabilities = _probabilities_output(outputs, specs)
    calibration = None
    if probabilities is not None:
        confidence = outputs[probabilities][present].max(axis=1).astype(np.float64)
        knots, accuracy = isotonic_fit(confidence, correct.astype(np.float64))
        calibration = ConfidenceCalibration(
            probabilities=probabilities,
            knots=tuple(knots.tolist()),
            accuracy=tuple(accuracy.tolist()),
        )
    return QualityProfile(
        task="classification",
        prediction=label,
        rows=int(present.sum()),
        accuracy=float(correct.mean()),
        calibration=calibration,
    )


def expected_accuracy(calibration: ConfidenceCalibration, probabilities: np.ndarray) -> Floats:
    """Each row's chance of being right, from its class probabilities `[n, C]`."""
    confidence = probabilities.reshape(probabilities.shape[0], -1).max(axis=1)
    expected: Floats = np.interp(
        confidence.astype(np.float64),
        np.asarray(calibration.knots),
        np.asarray(calibration.accuracy),
    )
    return expected


def isotonic_fit(x: Floats, y: Floats) -> tuple[Floats, Floats]:
    """The least-squares non-decreasing fit of `y` on `x`, by pool-adjacent-violators.

    Returns knots (strictly ascending `x` values: each block's first and last) and the fit
    there; `np.interp` between them is the fitted function (scikit-learn's
    `IsotonicRegression(out_of_bounds="clip")` gives the same). Tied `x` are pooled first.
    """
    unique, inverse = np.unique(x, return_inverse=True)
    weights = np.bincount(inverse).astype(np.float64)
    sums = np.bincount(inverse, weights=y)
    # Blocks of adjacent points as (sum, weight, first point); a block whose mean is not
    # below the next one's merges with it (equal means too: fewer knots, same function).
    block_sums: list[float] = []
    block_weights: list[float] = []
    block_starts: list[int] = []
    for index in range(unique.size):
        total, weight, start = float(sums[index]), float(weights[index]), index
        while block_sums and block_sums[-1] * weight >= total * block_weights[-1]:
            total += block_sums.pop()
            weight += block_weights.pop()
            start = block_starts.pop()
        block_sums.append(total)
        block_weights.append(weight)
        block_starts.append(start)
    ends = [*block_starts[1:], unique.size]
    knots: list[float] = []
    values: list[float] = []
    for total, weight, start, end in zip(
        block_sums, block_weights, block_starts, ends, strict=True
    ):
        mean = total / weight
        for point in dict.fromkeys((start, end - 1)):  # one knot for a one-point block
            knots.append(float(unique[point]))
            values.append(mean)
    return np.asarray(knots), np.asarray(values)


def _label_output(outputs: Mapping[str, np.ndarray], specs: tuple[TensorSpec, ...]) -> str | None:
    """The class-label output: the first one-per-row output that is not a float (the same
    rule that profiles an output as categorical)."""
    for spec in specs:
        values = outputs[spec.name]
        one_per_row = values.ndim == 1 or (values.ndim == 2 and values.shape[1] == 1)
        if one_per_row and values.dtype.kind != "f":
            return spec.name
    return None


def _probabilities_output(
    outputs: Mapping[str, np.ndarray], specs: tuple[TensorSpec, ...]
) -> str | None:
    """The first float `[batch, C]` output (C > 1) whose rows are probability distributions."""
    for spec in specs:
        values = outputs[spec.name]
        if values.ndim != 2 or values.shape[1] < 2 or values.dtype.kind != "f":
            continue
        rows = values.astype(np.float64)
        if (
            rows.size
            and np.all((rows >= 0.0) & (rows <= 1.0))
            and np.allclose(rows.sum(axis=1), 1.0, atol=SUM_TOLERANCE)
        ):
            return spec.name
    return None


def _equal(target: pl.Series, predicted: np.ndarray) -> npt.NDArray[np.bool_]:
    """Whether each prediction equals its target: as numbers when both are numbers (a
    float column of 0.0/1.0 against INT64 labels), else as text, as label feedback does."""
    if _is_number(target) and predicted.dtype.kind in "biuf":
        result: npt.NDArray[np.bool_] = target.cast(pl.Float64).to_numpy() == predicted.astype(
            np.float64
        )
        return result
    return np.asarray(target.cast(pl.String).to_numpy() == predicted.astype(str), dtype=bool)


def _regression(
    target: pl.Series, present: npt.NDArray[np.bool_], outputs: Mapping[str, np.ndarray], name: str
) -> QualityProfile | None:
    """MAE of the first output's first column, the value label feedback scores."""
    values = outputs[name]
    if not _is_number(target) or values.dtype.kind not in "biuf":
        return None
    predicted = values.reshape(values.shape[0], -1)[:, 0][present].astype(np.float64)
    errors = np.abs(target.filter(pl.Series(present)).cast(pl.Float64).to_numpy() - predicted)
    return QualityProfile(
        task="regression", prediction=name, rows=int(present.sum()), mae=float(errors.mean())
    )


def _is_number(series: pl.Series) -> bool:
    return series.dtype.is_numeric() or series.dtype == pl.Boolean
