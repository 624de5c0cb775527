"""Embedded control state: files under the data directory, safe across worker processes.

    state/deployments.json   every deployment, replaced atomically (write, fsync, rename)
    state/audit.jsonl        the audit log, one entry per line (see `registry.audit_file`)
    state/audit.head         sequence and hash of the last entry, a check on the log
    state/lock               flock held for the duration of a commit

A commit writes the new deployments beside the old (`.deployments.json.<entry hash>.next`),
appends its audit entry, then renames the new deployments into place. The entry is the
commit point: a commit cut short before it leaves no trace (the prepared file is removed),
and one cut short after it is finished by the next commit or start, which installs the
deployments prepared for the log's last entry. So the deployments in force are always the
ones the log's last entries record, a full disk refuses a change without writing any of it,
and a decision is never logged without landing (and then made a second time). Temporary
files of killed writers are removed at start. Other processes notice a change by polling
the deployments file's identity (cheap `stat`). Damaged files are reported naming the file
and what to do: deployments.json refuses to start (the gateway will not guess a traffic
split), the audit log is reported by `audit()` and keeps taking entries.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
from collections.abc import Iterator
from pathlib import Path

import msgspec

from registry.audit import AuditEntry, AuditHead, AuditLog
from registry.audit_file import AuditFile
from registry.deployment import Deployment
from registry.files import install, sweep_temporary, write_durably
from registry.state import (
    Change,
    ChangeListener,
    RevisionConflictError,
    StateDamagedError,
    StateUnavailableError,
)

logger = logging.getLogger(__name__)
POLL_INTERVAL = 0.05  # seconds: other workers apply a change well within 100 ms
DEPLOYMENTS = "deployments.json"
_DEPLOYMENTS = msgspec.json.Decoder(dict[str, Deployment])


class EmbeddedState:
    """Deployments and audit log as files; the default, with no service to run."""

    kind = "embedded"

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)
        self._audit = AuditFile(self.directory)
        self._known: dict[str, Deployment] = {}
        self._identity: tuple[int, int] | None = None
        self._listener: ChangeListener | None = None
        self._poller: asyncio.Task[None] | None = None

    @property
    def healthy(self) -> bool:
        """Files are always reachable; a full disk surfaces as a failed commit."""
        return True

    @property
    def error(self) -> StateUnavailableError | None:
        """Never unavailable (see `healthy`)."""
        return None

    async def start(self, listener: ChangeListener) -> None:
        """Recover the audit log from a crash, load the deployments, and start noticing
        other processes' changes.

        Raises:
            StateDamagedError: deployments.json cannot be read; the message says what to do.
        """
        self.directory.mkdir(parents=True, exist_ok=True)
        await asyncio.to_thread(self._recover)
        self._listener = listener
        self._identity = self._file_identity()
        await self._notify(await asyncio.to_thread(self._read_deployments))
        self._poller = asyncio.create_task(self._poll(), name="driftgate-state-poll")

    def check(self) -> None:
        """Raise `StateDamagedError` if the stored deployments cannot be read."""
        self._read_deployments()

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
        try:
            entry, self._known = await asyncio.to_thread(self._commit, change)
        except OSError as exc:  # a full or read-only disk: refused, and nothing changed
            raise StateUnavailableError(
                f"cannot write the control state under {self.directory}: {exc}"
            ) from exc
        return entry

    async def audit(self) -> AuditLog:
        """The audit log and its recorded head, damage included."""
        return await asyncio.to_thread(self._audit.read)

    def _recover(self) -> None:
        with self._locked():
            self._settle()
            sweep_temporary(self.directory)

    def _settle(self) -> AuditHead:
        """Finish or drop a commit cut short (under the lock); returns the head the next
        entry chains onto."""
        head = self._audit.recover()
        for prepared in self.directory.glob(f".{DEPLOYMENTS}.*.next"):
            if prepared != self._prepared(head.hash):
                prepared.unlink()  # its entry never reached the log: the change never was
                continue
            logger.warning(
                "installing the deployments of audit entry %d, whose commit was cut short",
                head.seq,
            )
            install(prepared, self.directory / DEPLOYMENTS)
        return head

    def _prepared(self, entry_hash: str) -> Path:
        return self.directory / f".{DEPLOYMENTS}.{entry_hash}.next"

    def _commit(self, change: Change) -> tuple[AuditEntry, dict[str, Deployment]]:
        with self._locked():
            head = self._settle()
            deployments = self._read_deployments()
            if change.expected_revision is not None:
                current = deployments.get(change.model)
                revision = current.revision if current else 0
                if revision != change.expected_revision:
                    raise RevisionConflictError(
                        f"the deployment of {change.model!r} changed meanwhile (revision "
                        f"{revision}, expected {change.expected_revision}); read it again"
                    )
            entry = change.entry_after(head)
            prepared = None
            if change.deployment is not None:
                deployments[change.model] = change.deployment
                prepared = self._prepared(entry.hash)
                write_durably(prepared, msgspec.json.encode(deployments))
            try:
                self._audit.append(entry)  # the commit point
            except BaseException:
                if prepared is not None:
                    prepared.unlink(missing_ok=True)
                raise
            if prepared is not None:
                install(prepared, self.directory / DEPLOYMENTS)
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
        path = self.directory / DEPLOYMENTS
        try:
            return _DEPLOYMENTS.decode(path.read_bytes())
        except FileNotFoundError:
            return {}
        except (msgspec.DecodeError, ValueError, RecursionError) as exc:
            raise StateDamagedError(
                f"{path} is damaged ({exc}), and the gateway will not guess the traffic "
                "splits: restore it from a backup, or move it aside to start every model on "
                f"its latest version (each deployment as last changed is in the 'after' of "
                f"its latest entry in {self._audit.log_path})"
            ) from exc

    def _file_identity(self) -> tuple[int, int] | None:
        try:
            stat = (self.directory / DEPLOYMENTS).stat()
        except FileNotFoundError:
            return None
        return stat.st_ino, stat.st_mtime_ns

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(POLL_INTERVAL)
            identity = self._file_identity()
            if identity != self._identity:
                self._identity = identity
                try:
                    deployments = await asyncio.to_thread(self._read_deployments)
                except (StateDamagedError, OSError) as exc:
                    # Keep serving the deployments in force; the next change is read again.
                    logger.error("not applying the stored deployments: %s", exc)
                    continue
                await self._notify(deployments)

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
