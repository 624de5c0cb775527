"""OpenAPI documentation of error bodies as they are sent: `{"error": "..."}`.

Litestar documents the errors it raises itself (a 400 for a body or parameter that does
not validate) with its own `{status_code, detail, extra}` shape, but every error of this
gateway goes through one handler (`gateway.app`) that answers `ErrorResponse`. Routes
behind a token also answer 401 (no valid token) and 403 (a role that may not do this).
Handlers name the other errors they answer with `errors(...)`.
"""

from __future__ import annotations

from litestar.openapi.datastructures import ResponseSpec
from litestar.openapi.spec import (
    OpenAPI,
    OpenAPIMediaType,
    OpenAPIResponse,
    Operation,
    Reference,
    Schema,
)

from gateway.protocol import ErrorResponse

_ERROR = Reference(ref="#/components/schemas/ErrorResponse")
_GUARDED = {
    "401": "No valid bearer token (`Authorization: Bearer TOKEN`)",
    "403": "The token's role may not do this",
}
_MEANINGS = {
    404: "Unknown model, version, rollout or action",
    409: "Conflicts with the deployment in force (nothing to promote or roll back, a rollout "
    "already running, a change made meanwhile)",
    410: "The pending change expired before its decision",
    413: "Body over the size limit",
    503: "The control state cannot be read or written right now (state backend unreachable "
    "or damaged), or a version cannot be loaded; the error says why",
    507: "No space left in the data directory; nothing was written",
}


def errors(*statuses: int) -> dict[int, ResponseSpec]:
    """The `responses` of a route handler: the error statuses it answers besides 400, each
    with an `ErrorResponse` body."""
    return {
        status: ResponseSpec(data_container=ErrorResponse, description=_MEANINGS[status])
        for status in statuses
    }


def document_errors(openapi: OpenAPI) -> None:
    """Point every documented error response at `ErrorResponse`, and document the token
    errors of guarded routes (after `document_infer`, which adds the schema)."""
    for path in (openapi.paths or {}).values():
        for method in ("get", "put", "post", "delete", "patch"):
            operation: Operation | None = getattr(path, method)
            if operation is None or not isinstance(operation.responses, dict):
                continue
            for status, response in operation.responses.items():
                if isinstance(response, OpenAPIResponse) and status.startswith(("4", "5")):
                    for media in (response.content or {}).values():
                        if isinstance(media.schema, Schema):  # Litestar's own shape
                            media.schema = _ERROR
            if operation.security:
                for status, description in _GUARDED.items():
                    operation.responses.setdefault(
                        status,
                        OpenAPIResponse(
                            description=description,
                            content={"application/json": OpenAPIMediaType(schema=_ERROR)},
                        ),
                    )
