"""Matching reference data columns to a model's inputs.

Convention: a model with a single 2-D input `[batch, F]` (the usual scikit-learn export)
takes the reference file's columns, target excluded, in file order as its F features; their
names become the feature names. Any other model takes, for every input of shape `[batch]` or
`[batch, 1]`, the column with the input's name.
"""

from __future__ import annotations

import numpy as np
import polars as pl

from registry.datatypes import OIP_TO_NUMPY
from registry.errors import InvalidReferenceError
from registry.manifest import Features, Signature, TensorSpec


def bind_features(frame: pl.DataFrame, signature: Signature, target: str | None) -> Features:
    """Decide which reference column feeds which input feature."""
    columns = [name for name in frame.columns if name != target]
    if target is not None and target not in frame.columns:
        raise InvalidReferenceError(f"target column {target!r} is not in the reference data")
    inputs = signature.inputs
    if len(inputs) == 1 and len(inputs[0].shape) == 2 and inputs[0].shape[1] != 1:
        width = inputs[0].shape[1]
        if width not in (-1, len(columns)):
            raise InvalidReferenceError(
                f"input {inputs[0].name!r} has {width} features but the reference data has "
                f"{len(columns)} columns besides the target: {columns}"
            )
        return Features(layout="matrix", names=tuple(columns))
    for spec in inputs:
        if len(spec.shape) > 2 or (len(spec.shape) == 2 and spec.shape[1] not in (1, -1)):
            raise InvalidReferenceError(
                f"input {spec.name!r} has shape {list(spec.shape)}; only one 2-D input or "
                "several [batch] / [batch, 1] inputs can be matched to reference columns"
            )
        if spec.name not in frame.columns:
            raise InvalidReferenceError(
                f"input {spec.name!r} has no column of that name in the reference data"
            )
    return Features(layout="columns", names=tuple(spec.name for spec in inputs))


def reference_inputs(
    frame: pl.DataFrame, signature: Signature, features: Features
) -> dict[str, np.ndarray]:
    """The model's input tensors for every reference row, in the model's dtypes."""
    if features.layout == "matrix":
        spec = signature.inputs[0]
        return {spec.name: _as_matrix(frame.select(features.names), spec)}
    tensors = {}
    for spec in signature.inputs:
        column = _cast(frame.get_column(spec.name).to_numpy(), spec)
        tensors[spec.name] = column.reshape(-1, 1) if len(spec.shape) == 2 else column
    return tensors


def _as_matrix(frame: pl.DataFrame, spec: TensorSpec) -> np.ndarray:
    try:
        return _cast(frame.to_numpy(), spec)
    except pl.exceptions.PolarsError as exc:
        raise InvalidReferenceError(f"reference columns for {spec.name!r}: {exc}") from exc


def _cast(values: np.ndarray, spec: TensorSpec) -> np.ndarray:
    dtype = OIP_TO_NUMPY[spec.datatype]
    try:
        if spec.datatype == "BYTES":
            return values.astype(str).astype(object)
        return np.ascontiguousarray(values.astype(dtype))
    except (TypeError, ValueError) as exc:
        raise InvalidReferenceError(
            f"reference data for input {spec.name!r} cannot be read as {spec.datatype}: {exc}"
        ) from exc
