"""Embedded control state: files under the data directory, safe across worker processes.

    state/deployments.json   every deployment, replaced atomically (write, fsync, rename)
    state/audit.jsonl        the audit log, one entry per line, appended and fsynced
    state/audit.head         sequence and hash of the last entry, replaced atomically
    state/lock               flock held for the duration of a commit

A commit appends its audit entry before it replaces the deployments, so a crash in between
leaves the old deployments intact and, at worst, an entry for a change that did not land.
Other processes notice a change by polling the deployments file's identity (cheap `stat`).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

import msgspec

from registry.audit import AuditEntry, AuditHead
from registry.deployment import Deployment
from registry.state import Change, ChangeListener, RevisionConflictError

POLL_INTERVAL = 0.05  # seconds: other workers apply a change well within 100 ms
_DEPLOYMENTS = msgspec.json.Decoder(dict[str, Deployment])
_ENTRY = msgspec.json.Decoder(AuditEntry)
_HEAD = msgspec.json.Decoder(AuditHead)


class EmbeddedState:
    """Deployments and audit log as files; the default, with no service to run."""

    kind = "embedded"

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)
        self._known: dict[str, Deployment] = {}
        self._identity: tuple[int, int] | None = None
        self._listener: ChangeListener | None = None
        self._poller: asyncio.Task[None] | None = None

    @property
    def healthy(self) -> bool:
        """Files are always reachable; a full disk surfaces as a failed commit."""
        return True

    async def start(self, listener: ChangeListener) -> None:
        """Load the deployments and start noticing other processes' changes."""
        self.directory.mkdir(parents=True, exist_ok=True)
        self._listener = listener
        self._identity = self._file_identity()
        await self._notify(await asyncio.to_thread(self._read_deployments))
        self._poller = asyncio.create_task(self._poll(), name="driftgate-state-poll")

    async def close(self) -> None:
        """Stop polling."""
        if self._poller is not None:
            self._poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._poller

    async def deployments(self) -> dict[str, Deployment]:
        """Every stored deployment, as last read."""
        return await asyncio.to_thread(self._read_deployments)

    async def commit(self, change: Change) -> AuditEntry:
        """Apply `change` and append its audit entry under the state lock.

        The listener is not called for this process's own commits: the writer applies them.
        """
        entry, self._known = await asyncio.to_thread(self._commit, change)
        return entry

    async def audit(self) -> tuple[list[AuditEntry], AuditHead]:
        """Every audit entry and the recorded head."""
        return await asyncio.to_thread(self._read_audit)

    def _commit(self, change: Change) -> tuple[AuditEntry, dict[str, Deployment]]:
        with self._locked():
            deployments = self._read_deployments()
            if change.expected_revision is not None:
                current = deployments.get(change.model)
                revision = current.revision if current else 0
                if revision != change.expected_revision:
                    raise RevisionConflictError(
                        f"the deployment of {change.model!r} changed meanwhile (revision "
                        f"{revision}, expected {change.expected_revision}); read it again"
                    )
            head = self._read_head()
            entry = change.entry_after(head)
            with (self.directory / "audit.jsonl").open("ab") as log:
                log.write(msgspec.json.encode(entry) + b"\n")
                log.flush()
                os.fsync(log.fileno())
            _replace(
                self.directory / "audit.head",
                msgspec.json.encode(AuditHead(seq=entry.seq, hash=entry.hash)),
            )
            if change.deployment is not None:
                deployments[change.model] = change.deployment
                _replace(self.directory / "deployments.json", msgspec.json.encode(deployments))
            return entry, deployments

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self.directory.mkdir(parents=True, exist_ok=True)
        with (self.directory / "lock").open("a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def _read_deployments(self) -> dict[str, Deployment]:
        path = self.directory / "deployments.json"
        try:
            return _DEPLOYMENTS.decode(path.read_bytes())
        except FileNotFoundError:
            return {}

    def _read_head(self) -> AuditHead:
        try:
            return _HEAD.decode((self.directory / "audit.head").read_bytes())
        except FileNotFoundError:
            return AuditHead()

    def _read_audit(self) -> tuple[list[AuditEntry], AuditHead]:
        try:
            lines = (self.directory / "audit.jsonl").read_bytes().splitlines()
        except FileNotFoundError:
            lines = []
        return [_ENTRY.decode(line) for line in lines if line.strip()], self._read_head()

    def _file_identity(self) -> tuple[int, int] | None:
        try:
            stat = (self.directory / "deployments.json").stat()
        except FileNotFoundError:
            return None
        return stat.st_ino, stat.st_mtime_ns

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(POLL_INTERVAL)
            identity = self._file_identity()
            if identity != self._identity:
                self._identity = identity
                await self._notify(await asyncio.to_thread(self._read_deployments))

    async def _notify(self, deployments: dict[str, Deployment]) -> None:
        changed = [
            name
            for name in deployments.keys() | self._known.keys()
            if deployments.get(name) != self._known.get(name)
        ]
        self._known = deployments
        if self._listener is not None:
            for name in changed:
                await self._listener(name, deployments.get(name))


def _replace(path: Path, data: bytes) -> None:
    """Write `data` to `path` atomically: readers see the old file or the new, never half."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with temporary.open("wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    temporary.replace(path)
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)
