"""Reference profiles: the distributions drift is later measured against.

Computed once at registration, over the training (or validation) data and over the model's
own outputs on that data.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

import numpy as np
import polars as pl

from registry.manifest import (
    CategoricalProfile,
    FeatureProfile,
    Features,
    NumericProfile,
    PCAProfile,
    ReferenceProfile,
    Signature,
    TensorSpec,
)
from registry.multivariate import ERROR_FEATURE, fit_pca

FINE_BINS = 100  # KS from 100 equal-mass bins is within ~1/100 of the exact statistic
COARSE_BINS = 10  # PSI's customary deciles: enough mass per bin for small windows


def build_profile(
    frame: pl.DataFrame,
    features: Features,
    inputs: Mapping[str, np.ndarray],
    outputs: Mapping[str, np.ndarray],
    signature: Signature,
) -> ReferenceProfile:
    """Profile every feature and every output the model produced on the reference.

    Numeric features are profiled from `inputs`, the reference as the model receives it
    (cast to the signature's dtypes), never from the file's own values: a float64 CSV
    profiled as float64 puts bin edges between values that float32 requests can only land
    on one side of, and drift-free FP32 traffic then looks drifted.
    """
    columns = frame.select(features.names)
    served = [
        _as_served(columns.get_column(name), index, features, inputs)
        for index, name in enumerate(features.names)
    ]
    profiles = tuple(profile_series(series) for series in served)
    numbers = [
        series.cast(pl.Float64).fill_null(np.nan).to_numpy() if series.dtype.is_numeric() else None
        for series in served
    ]
    return ReferenceProfile(
        rows=frame.height,
        features=profiles,
        outputs=tuple(_profile_outputs(outputs, signature.outputs)),
        multivariate=_multivariate(profiles, numbers),
    )


def _multivariate(
    profiles: tuple[FeatureProfile, ...], columns: list[np.ndarray | None]
) -> PCAProfile | None:
    fitted = fit_pca(profiles, columns)
    if fitted is None:
        return None
    error = _numeric(pl.Series(ERROR_FEATURE, fitted.held_out_errors))
    return PCAProfile(
        features=fitted.features,
        mean=tuple(fitted.mean.tolist()),
        scale=tuple(fitted.scale.tolist()),
        components=tuple(tuple(row) for row in fitted.components.tolist()),
        explained_variance=fitted.explained_variance,
        error=error,
    )


def profile_series(series: pl.Series) -> FeatureProfile:
    """A numeric profile for numeric columns, value frequencies for anything else."""
    if series.dtype.is_numeric():
        return _numeric(series)
    return _categorical(series)


def _as_served(
    column: pl.Series, index: int, features: Features, inputs: Mapping[str, np.ndarray]
) -> pl.Series:
    """Feature `index` as the model receives it, if that is a number; else its file column."""
    if features.layout == "matrix":
        (tensor,) = inputs.values()
        served = tensor.reshape(tensor.shape[0], -1)[:, index]
    else:
        served = inputs[column.name].reshape(-1)
    # Integer inputs cannot hold a missing value, and text keeps its file form: only
    # floating-point inputs change a numeric column's values.
    if not column.dtype.is_numeric() or served.dtype.kind != "f":
        return column
    return pl.Series(column.name, served)


def _profile_outputs(
    outputs: Mapping[str, np.ndarray], specs: tuple[TensorSpec, ...]
) -> Iterator[FeatureProfile]:
    for spec in specs:
        values = outputs[spec.name]
        if values.ndim == 1 or (values.ndim == 2 and values.shape[1] == 1):
            series = pl.Series(spec.name, values.reshape(-1))
            # Integer, boolean and string outputs are class labels: profile their shares.
            yield _numeric(series) if values.dtype.kind == "f" else _categorical(series)
        elif values.ndim == 2:
            for index in range(values.shape[1]):
                yield _numeric(pl.Series(f"{spec.name}[{index}]", values[:, index]))
        # Outputs of rank > 2 (images, sequences) have no per-row distribution to profile.


def _numeric(series: pl.Series) -> NumericProfile:
    total = series.len()
    values = series.cast(pl.Float64).fill_nan(None).drop_nulls()
    count = values.len()
    if count == 0:
        return NumericProfile(
            name=series.name,
            count=0,
            missing_rate=1.0 if total else 0.0,
            mean=0.0,
            std=0.0,
            min=0.0,
            max=0.0,
            fine_edges=(),
            fine_counts=(0,),
            coarse_edges=(),
            coarse_counts=(0,),
        )
    array = values.to_numpy()
    fine_edges, fine_counts = _quantile_bins(array, FINE_BINS, atoms=True)
    coarse_edges, coarse_counts = _quantile_bins(array, COARSE_BINS)
    std = values.std(ddof=0)
    return NumericProfile(
        name=series.name,
        count=count,
        missing_rate=1.0 - count / total,
        mean=float(values.mean()),  # type: ignore[arg-type]
        std=float(std) if std is not None else 0.0,  # type: ignore[arg-type]
        min=float(values.min()),  # type: ignore[arg-type]
        max=float(values.max()),  # type: ignore[arg-type]
        fine_edges=fine_edges,
        fine_counts=fine_counts,
        coarse_edges=coarse_edges,
        coarse_counts=coarse_counts,
    )


def _quantile_bins(
    values: np.ndarray, bins: int, *, atoms: bool = False
) -> tuple[tuple[float, ...], tuple[int, ...]]:
    """Interior cut points at the reference quantiles, and the reference count per bin.

    With `atoms`, every value holding at least one bin's share of the reference (a level
    of a discrete feature: 0 and 1 of a flag, the pixel value 0) also gets a bin of its
    own, `[v, next float after v)`. A quantile bin `[v, w)` cannot tell v from values just
    above it, so a discrete feature whose values all moved off their levels (a unit or
    encoding change) would otherwise look unchanged.
    """
    levels = np.arange(1, bins) / bins
    cuts = np.quantile(values, levels, method="linear")
    if atoms:
        distinct, counts = np.unique(values, return_counts=True)
        heavy = distinct[counts >= values.size / bins]
        cuts = np.concatenate([cuts, heavy, np.nextafter(heavy, np.inf)])
    # Ties (discrete features) give repeated quantiles; repeated cut points are empty bins.
    edges = np.unique(cuts)
    counts = np.bincount(np.searchsorted(edges, values, side="right"), minlength=edges.size + 1)
    return tuple(float(edge) for edge in edges), tuple(int(count) for count in counts)


def _categorical(series: pl.Series) -> CategoricalProfile:
    total = series.len()
    values = series.drop_nulls().cast(pl.String)
    counts = values.value_counts(sort=True)
    frequencies = dict(
        zip(
            counts.get_column(series.name).to_list(),
            counts.get_column("count").to_list(),
            strict=True,
        )
    )
    return CategoricalProfile(
        name=series.name,
        count=values.len(),
        missing_rate=(1.0 - values.len() / total) if total else 0.0,
        frequencies=frequencies,
    )
