"""Bearer tokens on requests: compared in constant time, checked against the roles each
group of routes lets in (`Access`). The tokens and roles themselves: `gateway.tokens`.
"""

from __future__ import annotations

import hmac
from typing import Any

import msgspec
from litestar.connection import ASGIConnection
from litestar.exceptions import NotAuthorizedException, PermissionDeniedException
from litestar.handlers.base import BaseRouteHandler

from gateway.tokens import Role, Token

WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


class Access(msgspec.Struct, frozen=True):
    """The roles a group of routes lets in, for reading and for writing."""

    reads: frozenset[Role]
    writes: frozenset[Role]


ADMIN_API = Access(reads=frozenset({"read", "admin"}), writes=frozenset({"admin"}))
LABELS = Access(reads=frozenset(), writes=frozenset({"feedback", "admin"}))
EXPLANATIONS = Access(reads=frozenset(), writes=frozenset({"explain", "admin"}))


class TokenGuard:
    """Litestar guard: 401 without a valid bearer token, 403 for a token whose role the
    routes do not let in for this method."""

    def __init__(self, tokens: tuple[Token, ...], access: Access = ADMIN_API) -> None:
        self._tokens = tokens
        self._access = access

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
                else "no tokens are configured; set DRIFTGATE_TOKENS",
                headers={"WWW-Authenticate": "Bearer"},
            )
        writing = connection.scope.get("method") in WRITE_METHODS
        allowed = self._access.writes if writing else self._access.reads
        if token.role not in allowed:
            raise PermissionDeniedException(
                f"token {token.name!r} has the {token.role} role; "
                f"{'writing' if writing else 'reading'} here needs "
                f"{' or '.join(sorted(allowed)) or 'a role no token has'}"
            )
        connection.scope["state"]["actor"] = token.name


def actor_of(connection: ASGIConnection[Any, Any, Any, Any]) -> str:
    """The name of the token that authenticated this request (set by the guard)."""
    actor: str = connection.scope["state"]["actor"]
    return actor
