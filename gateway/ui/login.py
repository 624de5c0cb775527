"""Logging in to the console with a token, and out again.

The token is sent once, in the body of the login form's POST (never in a URL), and traded
for a session cookie (`gateway.ui.session`). The login form carries a CSRF secret of its
own, matched against a cookie set with the form, so no other site can log a browser in.
"""

from __future__ import annotations

import hmac
from typing import Any

from litestar import MediaType, Request, Response, get, post
from litestar.di import NamedDependency
from litestar.response import Redirect, Template

from gateway.ui.csrf import CSRF_FIELD, check_same_origin
from gateway.ui.session import (
    CONSOLE_PATH,
    LOGIN_COOKIE,
    LOGIN_PATH,
    SESSION_COOKIE,
    LoginRefusedError,
    Sessions,
    cleared_login_cookie,
    cleared_session_cookie,
    login_cookie,
    new_secret,
    over_tls,
)

MAX_TOKEN_CHARS = 4096  # longer than any token worth having; bounds what is compared


@get("/login", name="console-login")
async def login_page(request: Request[Any, Any, Any], sessions: NamedDependency[Sessions]) -> Any:
    """The login form; a browser already logged in goes to the models page."""
    if sessions.read(request.cookies.get(SESSION_COOKIE)) is not None:
        return Redirect(CONSOLE_PATH, status_code=303)
    return _form(request, error="", status_code=200)


@post("/login", name="console-login-send")
async def login(request: Request[Any, Any, Any], sessions: NamedDependency[Sessions]) -> Any:
    """Trade a token for a session cookie (303 to the models page), or show the form
    again with what to fix (401 unknown token, 403 a role that cannot use the console)."""
    check_same_origin(request)
    form = await request.form()
    sent = form.get(CSRF_FIELD)
    expected = request.cookies.get(LOGIN_COOKIE, "")
    if not isinstance(sent, str) or not expected or not hmac.compare_digest(sent, expected):
        return _form(
            request,
            error="this login form has expired or was not sent from this gateway: log in again",
            status_code=403,
        )
    token = form.get("token")
    if not isinstance(token, str) or len(token) > MAX_TOKEN_CHARS:
        return _form(request, error="paste a token (at most 4096 characters)", status_code=400)
    try:
        _, value = sessions.login(token)
    except LoginRefusedError as exc:
        return _form(request, error=str(exc), status_code=exc.status_code)
    secure = over_tls(request)
    response: Response[Any] = Redirect(CONSOLE_PATH, status_code=303)
    response.set_cookie(sessions.session_cookie(value, secure=secure))
    response.set_cookie(cleared_login_cookie(secure=secure))
    return response


@post("/logout", name="console-logout")
async def logout(request: Request[Any, Any, Any]) -> Any:
    """End this browser's session (the guard checked its CSRF secret first)."""
    response: Response[Any] = Redirect(LOGIN_PATH, status_code=303)
    response.set_cookie(cleared_session_cookie(secure=over_tls(request)))
    return response


def _form(request: Request[Any, Any, Any], *, error: str, status_code: int) -> Template:
    """The login page with a fresh form secret, set in its cookie too."""
    secret = new_secret()
    return Template(
        "login.html",
        context={
            "csrf": secret,
            "error": error,
            "session": None,
            "page": "login",
            "max_token": MAX_TOKEN_CHARS,
        },
        status_code=status_code,
        cookies=[login_cookie(secret, secure=over_tls(request))],
        media_type=MediaType.HTML,
    )
