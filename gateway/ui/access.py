"""Who may see and do what in the console: the session guard, the admin guard, and how a
refusal is answered (a browser is sent to the login page; htmx and scripts get JSON)."""

from __future__ import annotations

from typing import Any

from litestar import MediaType, Request, Response
from litestar.connection import ASGIConnection
from litestar.exceptions import (
    HTTPException,
    NotAuthorizedException,
    PermissionDeniedException,
    ValidationException,
)
from litestar.handlers.base import BaseRouteHandler
from litestar.response import Redirect, Template

from gateway.auth import WRITE_METHODS
from gateway.errors import GatewayError, status_of
from gateway.protocol import ErrorResponse
from gateway.ui.csrf import check_same_origin, check_token
from gateway.ui.session import LOGIN_PATH, SESSION_COOKIE, ConsoleSession, Sessions
from registry import RegistryError

_STATE_KEY = "console_session"


class ConsoleGuard:
    """Lets in requests with a valid session; every write must also come from the
    console's own pages and carry the session's CSRF secret (403 otherwise)."""

    def __init__(self, sessions: Sessions) -> None:
        self._sessions = sessions

    async def __call__(
        self, connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler
    ) -> None:
        """Check the session (401 without one) and, on a write, the request's origin and
        CSRF secret (403)."""
        session = self._sessions.read(connection.cookies.get(SESSION_COOKIE))
        if connection.scope.get("method") in WRITE_METHODS:
            check_same_origin(connection)  # first: a forged request learns nothing else
            if session is None:
                raise NotAuthorizedException("log in to the console first (/ui/login)")
            await check_token(connection, session.csrf)
        elif session is None:
            raise NotAuthorizedException("log in to the console first (/ui/login)")
        connection.scope["state"][_STATE_KEY] = session


def admin_only(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
    """Lets in sessions of an admin token only (after `ConsoleGuard`)."""
    session = session_of(connection)
    if not session.can_act:
        raise PermissionDeniedException(
            f"token {session.actor!r} has the {session.role} role; acting needs an admin token"
        )


def session_of(connection: ASGIConnection[Any, Any, Any, Any]) -> ConsoleSession:
    """The session `ConsoleGuard` let in (a dependency of the console's handlers)."""
    session: ConsoleSession = connection.scope["state"][_STATE_KEY]
    return session


def wants_page(request: Request[Any, Any, Any]) -> bool:
    """Whether a browser navigates to this (a page), rather than htmx or a script asking."""
    return (
        request.method == "GET"
        and "hx-request" not in request.headers
        and "text/html" in request.headers.get("accept", "")
    )


def refused(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    """A console error: the login page or an error page for a browser; otherwise
    `{"error": ...}` with the status, as every other route of the gateway answers."""
    status, message = _status(exc)
    if status == 401 and wants_page(request):
        return Redirect(LOGIN_PATH, status_code=303)
    if wants_page(request):
        session = request.scope["state"].get(_STATE_KEY)  # None before the guard let it in
        return Template(
            "error.html",
            context={"status": status, "message": message, "session": session, "page": ""},
            status_code=status,
            media_type=MediaType.HTML,
        )
    # htmx follows HX-Redirect whatever the status: an expired session goes to the login.
    headers = {"HX-Redirect": LOGIN_PATH} if status == 401 else None
    return Response(
        ErrorResponse(error=message), status_code=status, media_type=MediaType.JSON, headers=headers
    )


def _status(exc: Exception) -> tuple[int, str]:
    if isinstance(exc, ValidationException) and exc.extra:
        return exc.status_code, f"{exc.detail}: {exc.extra}"
    if isinstance(exc, HTTPException):
        return exc.status_code, exc.detail
    if isinstance(exc, GatewayError | RegistryError):
        return status_of(exc), str(exc)
    return 500, f"internal error: {type(exc).__name__}"


CONSOLE_ERRORS = {
    HTTPException: refused,
    GatewayError: refused,
    RegistryError: refused,
}
"""Router exception handlers: the console's own answers to refusals and the caller's
mistakes; anything else goes to the app's handlers (logged, 500)."""
