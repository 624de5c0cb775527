"""The infer route as raw ASGI in front of the Litestar app: the lean hot path.

Litestar's request machinery (connection object, dependency injection, response objects)
costs more than the model on small requests, and infer needs none of it: the body is read
as bytes anyway (binary tensors), the data plane is bound once here, and the response is
prebuilt bytes. Protocol, validation, routing, sampling, metrics and error bodies are the
data plane's, identical to every other route's.
"""

from __future__ import annotations

import logging
import re
import time
from typing import cast

import msgspec
from litestar import Litestar
from litestar.enums import ScopeType
from litestar.types import (
    HTTPResponseBodyEvent,
    HTTPResponseStartEvent,
    Receive,
    Scope,
    Send,
)
from opentelemetry.trace import get_current_span

from gateway.content import decode_body, parse_byte_count, parse_header_length
from gateway.dataplane import DataPlane, InferenceResult
from gateway.errors import GatewayError, PayloadTooLargeError, status_of
from gateway.protocol import ErrorResponse

ERROR_ENCODER = msgspec.json.Encoder()
logger = logging.getLogger(__name__)
ACCESS_LOG = logging.getLogger("driftgate.access")
_TRACE_ID = re.compile(r"[0-9a-f]{32}")

INFER_PATH = re.compile(r"^/v2/models/([^/]+)(?:/versions/([^/]+))?/infer$")
_JSON = [(b"content-type", b"application/json")]
_BINARY = [(b"content-type", b"application/octet-stream")]
_ALLOW = (b"allow", b"POST")  # a 405 names the methods that are (RFC 9110)
_WANTED = frozenset(
    {b"content-length", b"content-encoding", b"inference-header-content-length", b"x-routing-key"}
)


class FastInfer:
    """The served ASGI app: infer calls go straight to the data plane, the rest to Litestar."""

    def __init__(self, app: Litestar, dataplane: DataPlane, *, max_request_bytes: int) -> None:
        self.litestar = app
        self._dataplane = dataplane
        self._limit = max_request_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Route one ASGI call (lifespan included: it belongs to Litestar)."""
        if scope["type"] == ScopeType.HTTP and (match := INFER_PATH.match(scope["path"])):
            await self._infer(scope, match, receive, send)
        else:
            await self.litestar(scope, receive, send)

    async def _infer(
        self, scope: Scope, match: re.Match[str], receive: Receive, send: Send
    ) -> InferenceResult | int:
        """Answer one infer call; returns its result, or the status it was refused with."""
        method = scope.get("method")
        if method != "POST":
            await _reply(
                send, 405, _error(f"{method} is not allowed here; use POST"), [*_JSON, _ALLOW]
            )
            return 405
        headers = {
            name: value.decode("latin-1") for name, value in scope["headers"] if name in _WANTED
        }
        try:
            body = await _read_body(receive, headers.get(b"content-length"), self._limit)
            body = decode_body(body, headers.get(b"content-encoding"), self._limit)
            result = await self._dataplane.infer(
                match[1],
                match[2],
                body,
                parse_header_length(headers.get(b"inference-header-content-length")),
                headers.get(b"x-routing-key"),
            )
        except Exception as exc:  # every failure is answered with its status, never raised
            status = status_of(exc)
            if status == 500 and not isinstance(exc, GatewayError):
                logger.exception(
                    "unexpected error in infer",
                    exc_info=exc,
                    extra={"model": match[1], "version": match[2]},
                )
            await _reply(send, status, _error(str(exc)), _JSON)
            return status
        response_headers = [
            (b"x-driftgate-version", str(result.model_version).encode()),
            (b"x-driftgate-role", result.role.encode()),
        ]
        if result.header_length is None:
            await _reply(send, 200, result.body, _JSON + response_headers)
        else:
            response_headers.append(
                (b"inference-header-content-length", str(result.header_length).encode())
            )
            await _reply(send, 200, result.body, _BINARY + response_headers)
        return result


class AccessLoggedInfer(FastInfer):
    """`FastInfer` that logs one line per infer call to `driftgate.access` (the
    `access_log` setting): method, path, status, latency, model, version, role, request id
    and trace id. `gateway.logs` writes the lines from a thread, off the event loop; with
    the access log off, this class is not used and infer calls pay nothing for it."""

    async def _infer(
        self, scope: Scope, match: re.Match[str], receive: Receive, send: Send
    ) -> InferenceResult | int:
        started = time.perf_counter()
        outcome = await super()._infer(scope, match, receive, send)
        latency_ms = round((time.perf_counter() - started) * 1000, 3)
        asked = match[2]  # the path's version, if it names one
        fields: dict[str, object] = {
            "model": match[1],
            "version": int(asked) if asked is not None and asked.isdigit() else asked,
        }
        if isinstance(outcome, InferenceResult):
            status = 200
            fields.update(
                version=outcome.model_version, role=outcome.role, request_id=outcome.request_id
            )
        else:
            status = outcome
        if not get_current_span().get_span_context().is_valid:  # not traced: the caller's
            fields["trace_id"] = _caller_trace_id(scope)
        method, path = scope.get("method"), scope["path"]
        fields.update(method=method, path=path, status=status, latency_ms=latency_ms)
        ACCESS_LOG.info("%s %s %d in %.3f ms", method, path, status, latency_ms, extra=fields)
        return outcome


def _caller_trace_id(scope: Scope) -> str | None:
    """The trace id of the call's W3C `traceparent` header, if it has a valid one."""
    for name, value in scope["headers"]:
        if name == b"traceparent":
            parts = value.decode("latin-1").split("-")
            if len(parts) == 4 and _TRACE_ID.fullmatch(parts[1]) and parts[1] != "0" * 32:
                return parts[1]
    return None


async def _read_body(receive: Receive, declared: str | None, limit: int) -> bytes:
    """The whole body, refused (413) as soon as it is known to pass `limit` bytes."""
    if declared is not None and parse_byte_count(declared, "Content-Length") > limit:
        raise PayloadTooLargeError(f"the body is over the limit of {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunk = cast(bytes, message.get("body", b""))
        size += len(chunk)
        if size > limit:
            raise PayloadTooLargeError(f"the body is over the limit of {limit} bytes")
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def _error(message: str) -> bytes:
    return ERROR_ENCODER.encode(ErrorResponse(error=message))


async def _reply(send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]]) -> None:
    start: HTTPResponseStartEvent = {
        "type": "http.response.start",
        "status": status,
        "headers": [*headers, (b"content-length", str(len(body)).encode())],
    }
    await send(start)
    end: HTTPResponseBodyEvent = {"type": "http.response.body", "body": body, "more_body": False}
    await send(end)
