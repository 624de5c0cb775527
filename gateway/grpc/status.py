"""The gRPC status of every error the gateway raises: one table, beside the HTTP statuses of
`gateway.errors`, so a call refused over REST is refused over gRPC with its twin."""

from __future__ import annotations

import logging

import grpc

from gateway.errors import GatewayError, status_of

logger = logging.getLogger(__name__)

GRPC_STATUS: dict[int, grpc.StatusCode] = {
    400: grpc.StatusCode.INVALID_ARGUMENT,
    401: grpc.StatusCode.UNAUTHENTICATED,
    403: grpc.StatusCode.PERMISSION_DENIED,
    404: grpc.StatusCode.NOT_FOUND,
    409: grpc.StatusCode.ABORTED,
    413: grpc.StatusCode.RESOURCE_EXHAUSTED,
    415: grpc.StatusCode.INVALID_ARGUMENT,
    500: grpc.StatusCode.INTERNAL,  # the model failed on valid input, or a bug of ours
    503: grpc.StatusCode.UNAVAILABLE,  # retrying may help: the version cannot serve now
    507: grpc.StatusCode.RESOURCE_EXHAUSTED,
}
"""HTTP status -> gRPC status code."""

# The REST wording that tensors' checks use, and what it means over gRPC.
_BINARY_HINT = (
    " (over gRPC: binary_data_size is the length of the input's raw_input_contents "
    "entry, and data its typed contents)"
)


def grpc_status(exc: Exception) -> tuple[grpc.StatusCode, str]:
    """The status code and message that answer `exc`; an unexpected error is logged."""
    status = status_of(exc)
    if status == 500 and not isinstance(exc, GatewayError):
        logger.exception("unexpected error in a gRPC call", exc_info=exc)
        return grpc.StatusCode.INTERNAL, f"internal error: {type(exc).__name__}: {exc}"
    message = str(exc)
    if "binary_data_size" in message:
        message += _BINARY_HINT
    return GRPC_STATUS.get(status, grpc.StatusCode.UNKNOWN), message
