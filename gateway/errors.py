"""Errors the data plane raises, each carrying the HTTP status it maps to."""

from __future__ import annotations

import errno

from registry.approvals import ApprovalError
from registry.deployment import PolicyConflictError, PolicyError
from registry.errors import (
    DamagedVersionError,
    IntegrityError,
    InvalidModelError,
    InvalidNameError,
    InvalidReferenceError,
    ModelNotFoundError,
    StoreUnavailableError,
)
from registry.state import RevisionConflictError, StateDamagedError, StateUnavailableError


class GatewayError(Exception):
    """Base class: `status_code` is the HTTP status, the message is the `error` text."""

    status_code = 500


class BadRequestError(GatewayError):
    """The caller sent something malformed or not matching the model's signature."""

    status_code = 400


class NotFoundError(GatewayError):
    """Unknown model or version."""

    status_code = 404


class PayloadTooLargeError(GatewayError):
    """The request body (or its decompressed form) is over the configured limit."""

    status_code = 413


class UnsupportedMediaTypeError(GatewayError):
    """A Content-Encoding the gateway does not decode."""

    status_code = 415


class ServiceUnavailableError(GatewayError):
    """The model cannot serve right now (artifact refused, queue full); retrying may help."""

    status_code = 503


class ModelRuntimeError(GatewayError):
    """The model itself failed while running on valid input."""

    status_code = 500


def status_of(exc: Exception) -> int:
    """The HTTP status of an error the data or control plane raised (500 if unknown)."""
    if isinstance(exc, GatewayError):
        return exc.status_code
    if disk_full(exc):
        return 507  # Insufficient Storage: nothing was written, freeing space fixes it
    if isinstance(exc, ApprovalError):
        return exc.status  # each refusal of a decision on a pending change has its own
    return next((code for kind, code in REGISTRY_STATUS if isinstance(exc, kind)), 500)


def disk_full(exc: BaseException | None) -> bool:
    """Whether `exc` is, or was caused by, a full disk or an exhausted quota."""
    while exc is not None:
        if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        exc = exc.__cause__
    return False


# Registry errors as HTTP statuses: the caller's mistakes are 4xx; damaged files and an
# unreachable state are 503, the server's trouble.
REGISTRY_STATUS: list[tuple[type[Exception], int]] = [
    (ModelNotFoundError, 404),
    (InvalidNameError, 400),
    (InvalidModelError, 400),
    (InvalidReferenceError, 400),
    (PolicyError, 400),
    (PolicyConflictError, 409),
    (RevisionConflictError, 409),
    (StateUnavailableError, 503),
    (StateDamagedError, 503),
    (DamagedVersionError, 503),
    (IntegrityError, 503),
    (StoreUnavailableError, 503),
]
