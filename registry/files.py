"""Durable writes of small files, and the sweeping of what a killed writer left.

A file is written under a temporary name beside its final one, `.NAME.OWNER.tmp`, and
renamed into place: a crash mid-write leaves the old file whole. A failed write (a full
disk) removes its temporary file; a killed writer's is removed by `sweep_temporary` at the
next start, which never touches the file of a process still running. Scratch directories
are named the same way, after their process (`PREFIX<OWNER>-<random>`, see `make_scratch`).

OWNER is `PID.HOST` (HOST: a hash of the host name). Whether a process runs can only be
asked on its own host: on a volume several hosts share (pods on one ReadWriteMany volume),
another host's leftovers are removed only once they are a day old, never while in use.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import shutil
import socket
import tempfile
import time
from pathlib import Path

logger = logging.getLogger(__name__)
HOST = hashlib.sha256(socket.gethostname().encode()).hexdigest()[:8]
FOREIGN_STALE_SECONDS = 24 * 3600.0  # no registration, upload or export takes a day


def owner_mark() -> str:
    """How this process names what it leaves in a directory: `PID.HOST`."""
    return f"{os.getpid()}.{HOST}"


def temporary_path(path: Path) -> Path:
    """Where this process writes `path` before renaming it into place."""
    return path.with_name(f".{path.name}.{owner_mark()}.tmp")


def make_scratch(parent: Path, prefix: str) -> Path:
    """A new directory `PREFIX<OWNER>-<random>` under `parent`, owned by this process."""
    parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f"{prefix}{owner_mark()}-", dir=parent))


def replace_file(path: Path, data: bytes) -> None:
    """Write `data` to `path` atomically: readers see the old file or the new, never half.

    The data is fsynced before the rename and the directory after it, so once this returns
    the new file survives a power loss, and before it returns the old one does. A failed
    write leaves no temporary file behind.
    """
    temporary = temporary_path(path)
    write_durably(temporary, data)
    install(temporary, path)


def write_durably(path: Path, data: bytes) -> None:
    """Write `data` to `path` and fsync it; on failure (a full disk) `path` is removed."""
    try:
        with path.open("wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
    except BaseException:
        with contextlib.suppress(OSError):  # the write's own error is the one to tell
            path.unlink(missing_ok=True)
        raise


def install(written: Path, path: Path) -> None:
    """Rename a durably written file to `path`, and make the rename durable."""
    written.replace(path)
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


def sweep_temporary(directory: Path) -> list[Path]:
    """Remove the temporary files (`.NAME.OWNER.tmp`) in `directory` whose writer is gone."""
    removed = []
    for entry in directory.glob(".*.tmp") if directory.is_dir() else ():
        rest, _, last = entry.name.removesuffix(".tmp").rpartition(".")
        # `.NAME.PID.tmp`, as earlier versions named them, was written on this host.
        owner = last if last.isdecimal() else f"{rest.rpartition('.')[2]}.{last}"
        if _abandoned(owner, entry) and entry.is_file():
            entry.unlink(missing_ok=True)
            removed.append(entry)
    if removed:
        logger.info("removed %d files left half-written by stopped processes", len(removed))
    return removed


def sweep_scratch(parent: Path, prefix: str) -> list[Path]:
    """Remove the directories `PREFIX<OWNER>-...` under `parent` whose process is gone."""
    removed = []
    for entry in parent.glob(f"{prefix}*") if parent.is_dir() else ():
        owner = entry.name[len(prefix) :].partition("-")[0]
        if entry.is_dir() and _abandoned(owner, entry):
            shutil.rmtree(entry, ignore_errors=True)
            removed.append(entry)
    if removed:
        logger.info("removed %d scratch directories left by stopped processes", len(removed))
    return removed


def _abandoned(owner: str, entry: Path) -> bool:
    """Whether the writer `PID.HOST` (or `PID`, of this host) of `entry` is gone."""
    pid, _, host = owner.partition(".")
    if not pid.isdecimal():
        return False  # not named by a process: not ours, left alone
    if host and host != HOST:
        try:
            return time.time() - entry.lstat().st_mtime > FOREIGN_STALE_SECONDS
        except OSError:
            return False
    return not process_running(int(pid))


def process_running(pid: int) -> bool:
    """Whether a process with this id exists (on this host)."""
    try:
        os.kill(pid, 0)  # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, under another user
        return True
    except OverflowError:  # too large to be a pid
        return False
    return True
