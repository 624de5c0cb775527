"""Which requests the monitor sees, and how their tensors become feature rows.

The sampling draw hashes the request's routing key, so it is unbiased (the hash is uniform
over keys) and reproducible (the same request is always in or out); without a key it is a
random draw. Rows are float64 `[n, F]` in the order of the version's reference profile,
categorical values as their category codes.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Mapping

import numpy as np
import numpy.typing as npt

from monitor.layout import WindowLayout
from registry.manifest import CategoricalProfile, FeatureProfile, Manifest
from registry.multivariate import reconstruction_errors

BUCKETS = 10_000
Floats = npt.NDArray[np.float64]


def bucket(salt: str, key: str | None) -> int:
    """The key's bucket in [0, 10,000): a stable hash of salt and key, random without a key."""
    if key is None:
        return random.randrange(BUCKETS)  # noqa: S311 - a statistical draw, not a secret
    digest = hashlib.blake2b(f"{salt}\x00{key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") % BUCKETS


def is_sampled(rate: float, model: str, key: str | None) -> bool:
    """Whether a request of `model` with routing key `key` is sampled at `rate` (0-1)."""
    if rate >= 1.0:
        return True
    return rate > 0.0 and bucket(f"{model}\x00sample", key) < rate * BUCKETS


def input_profiles(manifest: Manifest) -> tuple[FeatureProfile, ...]:
    """What the input window watches: every feature, then the PCA reconstruction error
    (a multivariate "feature", judged like the others) when the profile has a PCA."""
    multivariate = manifest.profile.multivariate
    features = manifest.profile.features
    return features if multivariate is None else (*features, multivariate.error)


class RowExtractor:
    """Turns one version's input and output tensors into the rows its windows take."""

    def __init__(self, manifest: Manifest, inputs: WindowLayout, outputs: WindowLayout) -> None:
        self._manifest = manifest
        self._inputs = inputs
        self._outputs = outputs
        self._numeric_matrix = (
            not any(isinstance(profile, CategoricalProfile) for profile in inputs.profiles)
            and manifest.signature.inputs[0].datatype != "BYTES"
        )
        # An output is profiled under its name, or per column as `name[i]` (`[batch, C]`,
        # C read from the reference run: the signature may say only -1).
        profiled = set(outputs.names)
        self._output_specs = [
            spec
            for spec in manifest.signature.outputs
            if spec.name in profiled or f"{spec.name}[0]" in profiled
        ]

    def input_rows(self, *requests: Mapping[str, np.ndarray]) -> Floats:
        """Feature rows of requests' inputs, in order, then the reconstruction error if it is
        watched: one PCA product for the whole batch, not one per request."""
        parts = [self._feature_rows(arrays) for arrays in requests]
        rows = np.concatenate(parts) if len(parts) > 1 else parts[0]
        multivariate = self._manifest.profile.multivariate
        if multivariate is None:
            return rows
        return np.column_stack([rows, reconstruction_errors(multivariate, rows)])

    def _feature_rows(self, arrays: Mapping[str, np.ndarray]) -> Floats:
        features = self._manifest.features
        if features.layout == "matrix":
            (matrix,) = arrays.values()
            table = matrix.reshape(matrix.shape[0], -1)
            if self._numeric_matrix:  # the common case: one conversion, no per-column work
                return np.asarray(table, dtype=np.float64)
            columns = [table[:, i] for i in range(len(features.names))]
        else:
            columns = [arrays[name].reshape(-1) for name in features.names]
        return self._stack(self._inputs, columns)

    def output_rows(self, results: Mapping[str, np.ndarray]) -> Floats:
        """Rows of the outputs that have a reference profile (`[batch, C]` split by column)."""
        columns: list[np.ndarray] = []
        for spec in self._output_specs:
            values = results[spec.name]
            values = values.reshape(values.shape[0], -1)
            columns.extend(values[:, index] for index in range(values.shape[1]))
        return self._stack(self._outputs, columns)

    @staticmethod
    def _stack(layout: WindowLayout, columns: list[np.ndarray]) -> Floats:
        rows = np.empty((columns[0].shape[0] if columns else 0, len(columns)))
        # The columns come first in the layout's order (derived ones, if any, follow them).
        for profile, (index, column) in zip(layout.profiles, enumerate(columns), strict=False):
            if isinstance(profile, CategoricalProfile):
                rows[:, index] = layout.encode(profile.name, column.tolist())
            else:
                rows[:, index] = column
        return rows
