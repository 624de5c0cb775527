"""The names `registry` exports: read by mypy, and by lazy_loader to load each on first use."""

from .errors import (
    DamagedVersionError,
    IntegrityError,
    InvalidModelError,
    InvalidNameError,
    InvalidReferenceError,
    ModelNotFoundError,
    RegistryError,
    StoreUnavailableError,
)
from .manifest import (
    CategoricalProfile,
    ConfidenceCalibration,
    DataFingerprint,
    FeatureProfile,
    Features,
    Manifest,
    NumericProfile,
    QualityProfile,
    ReferenceProfile,
    Signature,
    TensorSpec,
)
from .names import parse_version, validate_model_name
from .store import ModelRegistry, read_reference

__all__ = [
    "CategoricalProfile",
    "ConfidenceCalibration",
    "DamagedVersionError",
    "DataFingerprint",
    "FeatureProfile",
    "Features",
    "IntegrityError",
    "InvalidModelError",
    "InvalidNameError",
    "InvalidReferenceError",
    "Manifest",
    "ModelNotFoundError",
    "ModelRegistry",
    "NumericProfile",
    "QualityProfile",
    "ReferenceProfile",
    "RegistryError",
    "Signature",
    "StoreUnavailableError",
    "TensorSpec",
    "parse_version",
    "read_reference",
    "validate_model_name",
]
