"""Errors the registry raises; each message tells the caller what to fix."""

from __future__ import annotations


class RegistryError(Exception):
    """Base class of every registry error."""


class InvalidNameError(RegistryError, ValueError):
    """A model name or version that could escape the store or is malformed."""


class ModelNotFoundError(RegistryError, LookupError):
    """The model, or the requested version of it, is not registered."""


class IntegrityError(RegistryError):
    """An artifact's bytes no longer match the sha256 recorded at registration."""


class DamagedVersionError(RegistryError):
    """A version's files are missing or unreadable; it cannot be served until restored."""


class InvalidModelError(RegistryError, ValueError):
    """The ONNX file cannot be served (unreadable, or a non-tensor input/output)."""


class InvalidReferenceError(RegistryError, ValueError):
    """The reference data cannot be matched to the model's inputs."""


class StoreUnavailableError(RegistryError):
    """The object store holding the registry cannot be reached, or refuses the request."""
