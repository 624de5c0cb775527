"""Bearer tokens for the admin API: named, with a role, compared in constant time."""

from __future__ import annotations

import hmac
from typing import Any, Literal

import msgspec
from litestar.connection import ASGIConnection
from litestar.exceptions import NotAuthorizedException, PermissionDeniedException
from litestar.handlers.base import BaseRouteHandler

Role = Literal["read", "admin"]
ROLES: tuple[Role, ...] = ("read", "admin")
WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


class Token(msgspec.Struct, frozen=True):
    """A named credential; its name is the actor recorded in the audit log."""

    name: str
    role: Role
    secret: str

    def __repr__(self) -> str:  # never print the secret
        return f"Token(name={self.name!r}, role={self.role!r})"


def parse_tokens(text: str) -> tuple[Token, ...]:
    """Parse `NAME:ROLE:SECRET,...`; raises ValueError naming the bad entry."""
    tokens = []
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, _, rest = item.partition(":")
        role, _, secret = rest.partition(":")
        if not name or role not in ROLES or not secret:
            raise ValueError(
                f"token entry starting {name[:20]!r}: expected NAME:ROLE:SECRET with ROLE "
                "read or admin"
            )
        tokens.append(Token(name=name, role="admin" if role == "admin" else "read", secret=secret))
    return tuple(tokens)


class TokenGuard:
    """Litestar guard: 401 without a valid bearer token, 403 for a read token writing."""

    def __init__(self, tokens: tuple[Token, ...]) -> None:
        self._tokens = tokens

    def authenticate(self, authorization: str | None) -> Token | None:
        """The token matching an `Authorization: Bearer ...` header, if any."""
        scheme, _, presented = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not presented:
            return None
        found = None
        for token in self._tokens:  # compare against every token: timing reveals nothing
            if hmac.compare_digest(token.secret.encode(), presented.strip().encode()):
                found = token
        return found

    def __call__(self, connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
        token = self.authenticate(connection.headers.get("authorization"))
        if token is None:
            raise NotAuthorizedException(
                "a valid bearer token is required (Authorization: Bearer TOKEN)"
                if self._tokens
                else "no admin tokens are configured; set DRIFTGATE_TOKENS",
                headers={"WWW-Authenticate": "Bearer"},
            )
        if connection.scope.get("method") in WRITE_METHODS and token.role != "admin":
            raise PermissionDeniedException(
                f"token {token.name!r} has the read role; writes need admin"
            )
        connection.scope["state"]["actor"] = token.name


def actor_of(connection: ASGIConnection[Any, Any, Any, Any]) -> str:
    """The name of the token that authenticated this request (set by the guard)."""
    actor: str = connection.scope["state"]["actor"]
    return actor
