"""Security headers of every console and docs response, error responses included."""

from __future__ import annotations

from collections.abc import Iterable

from litestar.middleware import ASGIMiddleware
from litestar.types import ASGIApp, Message, Receive, Scope, Send

# Only the gateway's own origin: no inline script or style, no other host, no framing.
CONSOLE_POLICY = (
    "default-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
    "frame-ancestors 'none'"
)
# Swagger UI's stylesheet draws its icons as data: URIs, allowed on /docs alone; its
# scripts and styles are the gateway's own files (it sets styles through the DOM, which a
# CSP does not govern, so it needs no inline style).
DOCS_POLICY = (
    "default-src 'self'; img-src 'self' data:; "
    "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)


def security_headers(policy: str, *, no_store: bool = False) -> list[tuple[bytes, bytes]]:
    """The headers that go with a content security `policy`; `no_store` keeps a page out
    of every cache (a page shown after logging out must come from the server)."""
    headers = [
        (b"content-security-policy", policy.encode()),
        (b"x-content-type-options", b"nosniff"),
        (b"referrer-policy", b"same-origin"),
        (b"x-frame-options", b"DENY"),
        (b"cross-origin-opener-policy", b"same-origin"),
    ]
    return [*headers, (b"cache-control", b"no-store")] if no_store else headers


class SecurityHeaders(ASGIMiddleware):
    """Adds the security headers to each response of the routes it wraps. As router
    middleware it sits outside the routes' exception handling, so errors carry them too."""

    def __init__(self, policy: str, *, no_store: bool = False) -> None:
        self._headers = security_headers(policy, no_store=no_store)

    async def handle(self, scope: Scope, receive: Receive, send: Send, next_app: ASGIApp) -> None:
        """Pass the request on; add the headers to its response's start."""

        async def send_secured(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = _merged(message.get("headers", ()), self._headers)
            await send(message)

        await next_app(scope, receive, send_secured)


def _merged(
    headers: Iterable[tuple[bytes, bytes]], added: list[tuple[bytes, bytes]]
) -> list[tuple[bytes, bytes]]:
    names = {name for name, _ in added}
    return [(name, value) for name, value in headers if name.lower() not in names] + added
