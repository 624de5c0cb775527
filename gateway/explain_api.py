"""`POST /v1/models/{m}[/versions/{v}]/explain`: a thin handler over `gateway.explain`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from litestar import Request, Router, post
from litestar.di import NamedDependency, Provide
from litestar.openapi.spec import (
    OpenAPIFormat,
    OpenAPIMediaType,
    OpenAPIType,
    Operation,
    Reference,
    RequestBody,
    Schema,
)
from litestar.params import FromPath
from litestar.status_codes import HTTP_200_OK

from gateway.auth import TokenGuard
from gateway.content import decode_body, parse_header_length
from gateway.error_docs import errors
from gateway.explain import Explainer, Explanation
from gateway.settings import Settings


@dataclass
class _ExplainOperation(Operation):
    """The operation with its body documented: an infer call's, which the handler reads
    as bytes (binary tensors included), so Litestar cannot describe it by itself."""

    def __post_init__(self) -> None:
        request = Reference(ref="#/components/schemas/InferenceRequest")  # `document_infer`
        binary = Schema(type=OpenAPIType.STRING, format=OpenAPIFormat.BINARY)
        self.request_body = RequestBody(
            required=True,
            content={
                "application/json": OpenAPIMediaType(schema=request),
                "application/octet-stream": OpenAPIMediaType(schema=binary),
            },
        )


@post(
    ["/models/{name:str}/explain", "/models/{name:str}/versions/{version:str}/explain"],
    operation_class=_ExplainOperation,
    summary="Explain predictions",
    tags=["explain"],
    status_code=HTTP_200_OK,
    responses=errors(404, 413, 503),
)
async def explain(
    explainer: NamedDependency[Explainer],
    settings: NamedDependency[Settings],
    request: Request[Any, Any, Any],
    name: FromPath[str],
    version: FromPath[str | None] = None,
) -> Explanation:
    """Per-feature Shapley attributions of each numeric output (every class probability,
    or the value) for each row of an infer call's body, sent exactly as to infer (JSON or
    binary tensors, gzip or deflate), on the version that would answer it: the path's, else
    the one the deployment routes the call to. For tabular models: one 2-D numeric input
    `[batch, features]`. Each row's attributions add up to its prediction minus `baseline`,
    the mean output over a background drawn from the version's reference profile. 413:
    more rows than `explain_max_rows`, or more model evaluations than
    `explain_max_evaluations`; 503: every explanation worker busy, or past
    `explain_timeout_seconds`."""
    body = decode_body(
        await request.body(), request.headers.get("content-encoding"), settings.max_request_bytes
    )
    return await explainer.explain(
        name,
        version,
        body,
        parse_header_length(request.headers.get("inference-header-content-length")),
        request.headers.get("x-routing-key"),
    )


def explain_router(guard: TokenGuard, explainer: Explainer) -> Router:
    """The explain routes, behind `guard` (tokens of the `explain` or `admin` role)."""
    return Router(
        path="/v1",
        route_handlers=[explain],
        guards=[guard],
        security=[{"bearer": []}],
        dependencies={
            "explainer": Provide(lambda: explainer, use_cache=True, sync_to_thread=False)
        },
    )
