"""Errors the data plane raises, each carrying the HTTP status it maps to."""

from __future__ import annotations


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
