"""Console sessions: a token's identity in a signed cookie, never the token itself.

The cookie holds the token's name and the session's CSRF secret, timestamped and signed
(HMAC-SHA256, itsdangerous) with a key derived from that token's own secret. So every
worker and replica that knows the tokens accepts it without shared session storage, a
session ends when its lifetime is over, and changing a token's secret ends all of its
sessions at once. The role is read from the token configuration on every request: a
token whose role changes acts with its new role at once.

Cookies are HttpOnly (no script reads them), SameSite=Strict (no other site's page sends
them), limited to `/ui`, and Secure when the request came over TLS.
"""

from __future__ import annotations

import hashlib
import secrets
from typing import Any

import msgspec
from itsdangerous import BadData, URLSafeTimedSerializer
from litestar.connection import ASGIConnection
from litestar.datastructures import Cookie

from gateway.auth import TokenGuard
from gateway.tokens import Role, Token

SESSION_COOKIE = "driftgate_console"
LOGIN_COOKIE = "driftgate_login"  # the login form's CSRF secret, before any session
CONSOLE_PATH = "/ui"
LOGIN_PATH = "/ui/login"
LOGIN_FORM_SECONDS = 3600  # how long a login form may stay open before it is sent
_SALT = "driftgate.console.session"
CONSOLE_ROLES: frozenset[Role] = frozenset({"read", "admin"})


class LoginRefusedError(Exception):
    """A token that cannot open a console session; the message says why, `status_code`
    is 401 for a secret no token has, 403 for a token whose role has no console."""

    def __init__(self, message: str, status_code: int) -> None:
        super().__init__(message)
        self.status_code = status_code


class ConsoleSession(msgspec.Struct, frozen=True, kw_only=True):
    """Who is logged in: the token's name (the audit log's actor) and role, and the
    secret every form and htmx request of this session must carry."""

    actor: str
    role: Role
    csrf: str

    @property
    def can_act(self) -> bool:
        """Whether this session may steer rollouts and deployments."""
        return self.role == "admin"


class Sessions:
    """Opens and reads console sessions for the configured tokens."""

    def __init__(self, tokens: tuple[Token, ...], lifetime_seconds: float) -> None:
        self._tokens = {token.name: token for token in tokens}
        self._guard = TokenGuard(tokens)
        self.lifetime_seconds = lifetime_seconds

    def login(self, secret: str) -> tuple[ConsoleSession, str]:
        """The session a token's `secret` opens, and its signed cookie value.

        Raises:
            LoginRefusedError: no token has that secret, or its role cannot use the console.
        """
        # The guard compares the secret against every token in constant time.
        token = self._guard.authenticate(f"Bearer {secret.strip()}") if secret.strip() else None
        if token is None:
            raise LoginRefusedError(
                "no token has that secret: paste a token of DRIFTGATE_TOKENS (its SECRET part)"
                if self._tokens
                else "no tokens are configured; set DRIFTGATE_TOKENS and restart the gateway",
                401,
            )
        if token.role not in CONSOLE_ROLES:
            raise LoginRefusedError(
                f"token {token.name!r} has the {token.role} role; the console needs a read or "
                "admin token",
                403,
            )
        session = ConsoleSession(actor=token.name, role=token.role, csrf=new_secret())
        value = _serializer(token).dumps({"actor": session.actor, "csrf": session.csrf})
        return session, value

    def read(self, value: str | None) -> ConsoleSession | None:
        """The session a cookie value holds, or None when it is missing, forged, expired,
        or its token no longer exists or no longer has a console role."""
        if not value:
            return None
        _, claimed = URLSafeTimedSerializer(b"").loads_unsafe(value)  # only to name the key
        token = self._tokens.get(claimed.get("actor", "")) if isinstance(claimed, dict) else None
        if token is None or token.role not in CONSOLE_ROLES:
            return None
        try:
            payload: Any = _serializer(token).loads(value, max_age=int(self.lifetime_seconds))
        except BadData:  # a bad signature, a malformed value, or an expired session
            return None
        if not isinstance(payload, dict) or not isinstance(csrf := payload.get("csrf"), str):
            return None
        return ConsoleSession(actor=token.name, role=token.role, csrf=csrf)

    def session_cookie(self, value: str, *, secure: bool) -> Cookie:
        """The cookie that carries a session."""
        return _cookie(SESSION_COOKIE, value, CONSOLE_PATH, int(self.lifetime_seconds), secure)


def login_cookie(value: str, *, secure: bool) -> Cookie:
    """The cookie that carries the login form's CSRF secret."""
    return _cookie(LOGIN_COOKIE, value, LOGIN_PATH, LOGIN_FORM_SECONDS, secure)


def cleared_session_cookie(*, secure: bool) -> Cookie:
    """The cookie that removes a session from the browser."""
    return _cookie(SESSION_COOKIE, "", CONSOLE_PATH, 0, secure)


def cleared_login_cookie(*, secure: bool) -> Cookie:
    """The cookie that removes a used login form's secret from the browser."""
    return _cookie(LOGIN_COOKIE, "", LOGIN_PATH, 0, secure)


def over_tls(connection: ASGIConnection[Any, Any, Any, Any]) -> bool:
    """Whether the request came over TLS (directly, or through a trusted proxy's headers)."""
    return connection.url.scheme == "https"


def new_secret() -> str:
    """A fresh random CSRF secret."""
    return secrets.token_urlsafe(32)


def _serializer(token: Token) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(
        token.secret, salt=_SALT, signer_kwargs={"digest_method": hashlib.sha256}
    )


def _cookie(key: str, value: str, path: str, max_age: int, secure: bool) -> Cookie:
    return Cookie(
        key=key,
        value=value,
        path=path,
        max_age=max_age,
        httponly=True,
        samesite="strict",
        secure=secure,
    )
