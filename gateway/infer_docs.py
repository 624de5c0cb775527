"""OpenAPI documentation of the raw ASGI infer route, which Litestar cannot describe itself."""

from __future__ import annotations

from typing import Any

import msgspec
from litestar.openapi.spec import OpenAPI, Operation, PathItem

from gateway.protocol import ErrorResponse, InferenceRequest, InferenceResponse

_DESCRIPTION = (
    "Run the model on the request's tensors: the version in the path, else the one the "
    "deployment routes the call to (sticky by `x-routing-key`, else the request id). The body "
    "is an inference request in JSON, optionally followed by binary tensor data (Triton's "
    "extension) whose JSON header length is the `Inference-Header-Content-Length` header; "
    "`gzip` and `deflate` bodies are accepted. The response carries `x-driftgate-version` and "
    "`x-driftgate-role`."
)
_ERRORS = {
    "400": "Malformed request, or tensors that do not match the model's signature",
    "404": "Unknown model or version",
    "413": "Body over the size limit, compressed or decompressed",
    "415": "Unsupported Content-Encoding",
    "500": "The model failed on valid input",
    "503": "The version cannot be served (files damaged or missing, batch queue full)",
}
# Plain dicts: to_schema() passes them through, and they read like the document itself.
_REQUEST_HEADERS = [
    {
        "name": "Inference-Header-Content-Length",
        "in": "header",
        "description": "Length in bytes of the JSON header that binary tensor data follows",
        "schema": {"type": "integer", "minimum": 0},
    },
    {
        "name": "Content-Encoding",
        "in": "header",
        "description": "The body's compression",
        "schema": {"type": "string", "enum": ["gzip", "deflate", "identity"]},
    },
    {
        "name": "x-routing-key",
        "in": "header",
        "description": "Calls with the same key go to the same version (sticky routing)",
        "schema": {"type": "string"},
    },
]
_RESPONSE_HEADERS = {
    "x-driftgate-version": {
        "description": "The version that answered",
        "schema": {"type": "string", "pattern": "^[1-9][0-9]*$"},
    },
    "x-driftgate-role": {
        "description": "Its role: the call's route in the deployment, or `explicit`",
        "schema": {"type": "string", "enum": ["stable", "canary", "shadow", "explicit"]},
    },
    "Inference-Header-Content-Length": {
        "description": "With binary outputs: length in bytes of the JSON header before them",
        "schema": {"type": "integer", "minimum": 0},
    },
}


def document_infer(openapi: OpenAPI) -> None:
    """Add the infer paths and their message schemas to an app's OpenAPI document."""
    _, components = msgspec.json.schema_components(
        [InferenceRequest, InferenceResponse, ErrorResponse],
        ref_template="#/components/schemas/{name}",
    )
    schemas: dict[str, Any] = dict(openapi.components.schemas or {})
    schemas.update(components)
    openapi.components.schemas = schemas
    for path, parameters in [
        ("/v2/models/{name}/infer", ["name"]),
        ("/v2/models/{name}/versions/{version}/infer", ["name", "version"]),
    ]:
        openapi.paths = {**(openapi.paths or {}), path: PathItem(post=_operation(parameters))}


def _operation(names: list[str]) -> Operation:
    binary = {"schema": {"type": "string", "format": "binary"}}
    parameters: Any = [
        {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
        for name in names
    ] + _REQUEST_HEADERS
    body: Any = {
        "required": True,
        "content": {
            "application/json": {"schema": _ref("InferenceRequest")},
            "application/octet-stream": binary,
        },
    }
    responses: Any = {
        "200": {
            "description": "The outputs",
            "headers": _RESPONSE_HEADERS,
            "content": {
                "application/json": {"schema": _ref("InferenceResponse")},
                "application/octet-stream": binary,
            },
        },
        **{
            status: {
                "description": text,
                "content": {"application/json": {"schema": _ref("ErrorResponse")}},
            }
            for status, text in _ERRORS.items()
        },
    }
    return Operation(
        tags=["inference"],
        summary="Inference",
        description=_DESCRIPTION,
        operation_id="infer" + "".join(name.title() for name in names),
        parameters=parameters,
        request_body=body,
        responses=responses,
    )


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}
