"""Bearer tokens: named, with a role, read from `NAME:ROLE:SECRET,...`.

Roles: `read` reads the admin API; `feedback` sends label feedback (which decides the
accuracy gates, so it is a credential of the labelling pipeline, not of every caller);
`explain` asks for explanations of predictions (which reveal how the model decides);
`admin` does everything. `gateway.auth` checks them on requests; this module is apart so
that reading the settings imports no web framework.
"""

from __future__ import annotations

from typing import Literal

import msgspec

Role = Literal["read", "feedback", "explain", "admin"]
ROLES: tuple[Role, ...] = ("read", "feedback", "explain", "admin")


class Token(msgspec.Struct, frozen=True):
    """A named credential; its name is the actor recorded in the audit log."""

    name: str
    role: Role
    secret: str

    def __repr__(self) -> str:  # never print the secret
        return f"Token(name={self.name!r}, role={self.role!r})"


def parse_tokens(text: str) -> tuple[Token, ...]:
    """Parse `NAME:ROLE:SECRET,...`; raises ValueError naming the bad entry by its position
    only (its text may be, or hold, a secret)."""
    tokens = []
    items = [part.strip() for part in text.split(",") if part.strip()]
    for position, item in enumerate(items, start=1):
        name, _, rest = item.partition(":")
        role, _, secret = rest.partition(":")
        if not name or role not in ROLES or not secret:
            raise ValueError(
                f"token entry {position} of {len(items)} is not NAME:ROLE:SECRET with ROLE "
                f"one of {', '.join(ROLES)} (the entry is not shown: it may hold a secret)"
            )
        tokens.append(Token(name=name, role=next(r for r in ROLES if r == role), secret=secret))
    return tuple(tokens)
