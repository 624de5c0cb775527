"""The control-state interface: deployments and the audit log, shared by every worker.

Two implementations: `EmbeddedState` (files under the data directory, the default) and
`RedisState` (many workers and replicas). Both make a change and its audit entry one atomic
step, guarded by the deployment's revision so concurrent writers cannot lose an update.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import msgspec

from registry.audit import AuditEntry, AuditHead, AuditLog, next_entry
from registry.deployment import Deployment
from registry.errors import RegistryError

ChangeListener = Callable[[str, Deployment | None], Awaitable[None]]


class StateUnavailableError(RegistryError):
    """The state backend cannot be reached; writes are refused (HTTP 503)."""


class StateAuthenticationError(StateUnavailableError):
    """The backend refused our credentials: a configuration error that does not heal by
    itself, so the gateway also reports itself not ready until it is fixed."""


class StateDamagedError(RegistryError):
    """Stored control state cannot be read back; the message names it and what to do."""


class RevisionConflictError(RegistryError):
    """The deployment changed since it was read; re-read and retry (HTTP 409)."""


class Change(msgspec.Struct, frozen=True, kw_only=True):
    """One audited act: an optional new deployment, and what the audit log should say."""

    model: str
    action: str
    actor: str
    reason: str = ""
    expected_revision: int | None = None  # None: no deployment change, only an audit entry
    deployment: Deployment | None = None
    before: Any = None
    after: Any = None

    def entry_after(self, head: AuditHead) -> AuditEntry:
        """The audit entry recording this change, chained onto `head`."""
        return next_entry(
            head,
            actor=self.actor,
            action=self.action,
            model=self.model,
            reason=self.reason,
            before=self.before,
            after=self.after,
        )


class StateBackend(Protocol):
    """Where deployments and the audit log live."""

    kind: str

    @property
    def healthy(self) -> bool:
        """Whether the backend is reachable right now."""
        ...

    @property
    def error(self) -> StateUnavailableError | None:
        """Why the backend is unhealthy (None while healthy): what writes are refused with."""
        ...

    async def start(self, listener: ChangeListener) -> None:
        """Connect, and call `listener` for every deployment changed by any writer."""
        ...

    async def close(self) -> None:
        """Stop listening and release connections."""
        ...

    async def deployments(self) -> dict[str, Deployment]:
        """Every stored deployment, by model."""
        ...

    async def commit(self, change: Change) -> AuditEntry:
        """Apply the change and append its audit entry, atomically.

        Raises:
            RevisionConflictError: the deployment's revision is not `expected_revision`.
            StateUnavailableError: the backend cannot be reached.
        """
        ...

    async def audit(self) -> AuditLog:
        """Every audit entry, oldest first, and the recorded head of the chain; entries or
        a head that cannot be read are reported in the log, not raised."""
        ...
