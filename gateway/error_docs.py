"""OpenAPI documentation of error bodies as they are sent: `{"error": "..."}`.

Litestar documents the errors it raises itself (a 400 for a body or parameter that does
not validate) with its own `{status_code, detail, extra}` shape, but every error of this
gateway goes through one handler (`gateway.app`) that answers `ErrorResponse`. Routes
behind a token also answer 401 (no valid token) and 403 (a role that may not do this).
"""

from __future__ import annotations

from litestar import Litestar
from litestar.openapi.spec import OpenAPIMediaType, OpenAPIResponse, Operation, Reference, Schema

_ERROR = Reference(ref="#/components/schemas/ErrorResponse")
_GUARDED = {
    "401": "No valid bearer token (`Authorization: Bearer TOKEN`)",
    "403": "The token's role may not do this",
}


def document_errors(app: Litestar) -> None:
    """Point every documented error response at `ErrorResponse`, and document the token
    errors of guarded routes (after `document_infer`, which adds the schema)."""
    for path in (app.openapi_schema.paths or {}).values():
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
