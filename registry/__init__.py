"""Versioned model store: artifacts, manifests, signatures and reference profiles."""

from registry.errors import (
    IntegrityError,
    InvalidModelError,
    InvalidNameError,
    InvalidReferenceError,
    ModelNotFoundError,
    RegistryError,
)
from registry.manifest import (
    CategoricalProfile,
    DataFingerprint,
    FeatureProfile,
    Features,
    Manifest,
    NumericProfile,
    ReferenceProfile,
    Signature,
    TensorSpec,
)
from registry.names import parse_version, validate_model_name
from registry.store import ModelRegistry, read_reference

__all__ = [
    "CategoricalProfile",
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
    "ReferenceProfile",
    "RegistryError",
    "Signature",
    "TensorSpec",
    "parse_version",
    "read_reference",
    "validate_model_name",
]
