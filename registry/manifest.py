"""The manifest: everything recorded about one immutable model version."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Literal, TypeVar

import msgspec


class TensorSpec(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """One input or output tensor of a model, as the Open Inference Protocol names it."""

    name: str
    datatype: str  # OIP datatype: FP32, INT64, BYTES, ...
    shape: tuple[int, ...]  # -1 marks a variable dimension


class Signature(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The tensors a model takes and gives, read from its ONNX graph."""

    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]

    def input(self, name: str) -> TensorSpec | None:
        """The input called `name`, if any."""
        return next((spec for spec in self.inputs if spec.name == name), None)

    def output(self, name: str) -> TensorSpec | None:
        """The output called `name`, if any."""
        return next((spec for spec in self.outputs if spec.name == name), None)


class Features(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """How named features map onto the model's input tensors.

    `matrix`: the model has one 2-D input `[batch, F]` and `names[i]` is its column i.
    `columns`: every input is one feature of shape `[batch]` or `[batch, 1]`, named as the input.
    """

    layout: Literal["matrix", "columns"]
    names: tuple[str, ...]


class DataFingerprint(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Identifies the training (reference) data a version was registered with."""

    filename: str
    sha256: str
    rows: int
    schema: dict[str, str]  # column -> polars dtype


class NumericProfile(
    msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True, tag="numeric"
):
    """Reference distribution of a numeric feature or output.

    Bins are defined by interior cut points: bin 0 is `(-inf, edges[0])`, bin i is
    `[edges[i-1], edges[i])` and the last bin is `[edges[-1], inf)`, so
    `len(counts) == len(edges) + 1`. Cut points sit at reference quantiles, so bins
    hold roughly equal reference mass (ties merge bins).
    """

    name: str
    count: int  # non-missing values
    missing_rate: float
    mean: float
    std: float
    min: float
    max: float
    fine_edges: tuple[float, ...]  # about 100 quantile bins, for KS and Wasserstein
    fine_counts: tuple[int, ...]
    coarse_edges: tuple[float, ...]  # about 10 quantile bins, for PSI and JS
    coarse_counts: tuple[int, ...]


class CategoricalProfile(
    msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True, tag="categorical"
):
    """Reference distribution of a categorical feature or output (class labels)."""

    name: str
    count: int
    missing_rate: float
    frequencies: dict[str, int]  # value (as text) -> count


FeatureProfile = NumericProfile | CategoricalProfile


class PCAProfile(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A PCA of the standardized numeric features, for multivariate drift.

    Fitted on half the reference rows; `error` profiles the reconstruction error of the
    other half (see `registry.multivariate`).
    """

    features: tuple[int, ...]  # indices (in feature order) of the numeric features covered
    mean: tuple[float, ...]  # per covered feature, to standardize
    scale: tuple[float, ...]
    components: tuple[tuple[float, ...], ...]  # kept principal directions, orthonormal rows
    explained_variance: float  # share of the standardized variance they keep
    error: NumericProfile  # each held-out row's RMS reconstruction error, in std


class ReferenceProfile(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Distributions of every input feature and model output over the reference data."""

    rows: int
    features: tuple[FeatureProfile, ...]
    outputs: tuple[FeatureProfile, ...]
    multivariate: PCAProfile | None = None  # None: fewer than two varying numeric features


class ConfidenceCalibration(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """How often a classifier was right at each confidence, on its labelled reference.

    Confidence is the highest class probability of a row. The map is an isotonic
    (non-decreasing) fit of "the label was right" on confidence, given by knots:
    `np.interp(confidence, knots, accuracy)` is the expected accuracy of a row, linear
    between knots and clamped beyond the first and last. Averaged over live rows it
    estimates accuracy without labels (confidence-based performance estimation).
    """

    probabilities: str  # the output of class probabilities, `[batch, C]`
    knots: tuple[float, ...]  # confidences, strictly ascending
    accuracy: tuple[float, ...]  # calibrated accuracy at each knot, non-decreasing


class QualityProfile(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """How well the version did on its labelled reference data (needs a target column)."""

    task: Literal["classification", "regression"]  # a class-label output, or a number
    prediction: str  # the output compared with the target (as label feedback does)
    rows: int  # reference rows with a target value
    accuracy: float | None = None  # share of correct labels (classification)
    mae: float | None = None  # mean absolute error (regression)
    # The estimator of accuracy without labels; only for classifiers with a probabilities
    # output whose rows are probability distributions.
    calibration: ConfidenceCalibration | None = None


class Manifest(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Everything recorded about one model version; written once, never changed."""

    name: str
    version: int
    sha256: str  # of model.onnx; checked before the version is ever loaded
    size_bytes: int
    created_at: datetime
    created_by: str  # the actor that registered it (user or token name)
    owner: str  # the team or person answerable for it
    description: str = ""
    tags: dict[str, str] = {}
    metrics: dict[str, float] = {}
    parent_version: int | None = None
    signature: Signature
    features: Features
    sensitive: tuple[str, ...] = ()  # features never written to an export as they are
    target: str | None = None
    training_data: DataFingerprint
    profile: ReferenceProfile
    # Quality on the reference data, when registered with a target; absent in manifests
    # written before it existed, which still decode.
    quality: QualityProfile | None = None


T = TypeVar("T")


def parse_pairs(items: Iterable[str], convert: Callable[[str], T]) -> dict[str, T]:
    """`KEY=VALUE` items (tags, metrics) as a dict; raises ValueError naming the bad item."""
    pairs: dict[str, T] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"{item!r}: expected KEY=VALUE")
        try:
            pairs[key] = convert(value)
        except ValueError as exc:
            raise ValueError(f"{item!r}: {exc}") from exc
    return pairs


def encode_manifest(manifest: Manifest) -> bytes:
    """The manifest as indented JSON, the form stored next to the artifact."""
    return msgspec.json.format(msgspec.json.encode(manifest), indent=2)


def decode_manifest(data: bytes) -> Manifest:
    """Parse a stored manifest, rejecting unknown or missing fields."""
    return msgspec.json.decode(data, type=Manifest)
