"""Scratch directories that a crash cannot leave behind for long.

Each is named after the process that made it (`PREFIX<pid>-<random>`) and removed when
that process is done with it; what a killed process left is removed by `sweep` at the next
start, which never touches the directory of a process still running (another worker, or
another gateway on the same host).
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

logger = logging.getLogger(__name__)


def make(prefix: str, parent: Path | None = None) -> Path:
    """A new directory owned by this process (under the system's temporary directory
    unless `parent` is given); the caller removes it."""
    if parent is not None:
        parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f"{prefix}{os.getpid()}-", dir=parent))


@contextlib.contextmanager
def directory(prefix: str, parent: Path | None = None) -> Iterator[Path]:
    """A directory owned by this process, removed on leaving the block, failure included."""
    path = make(prefix, parent)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def sweep(prefix: str, parent: Path | None = None) -> list[Path]:
    """Remove the `prefix` directories whose process is gone; returns those removed."""
    root = Path(tempfile.gettempdir()) if parent is None else parent
    removed = []
    for entry in root.glob(f"{prefix}*") if root.is_dir() else ():
        owner = entry.name[len(prefix) :].partition("-")[0]
        # Not named by a pid: not one of ours (an older gateway's, perhaps): left alone.
        if entry.is_dir() and owner.isdecimal() and not _running(int(owner)):
            shutil.rmtree(entry, ignore_errors=True)
            removed.append(entry)
    if removed:
        logger.info("removed %d scratch directories left by stopped processes", len(removed))
    return removed


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)  # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, under another user
        return True
    except OverflowError:  # too large to be a pid
        return False
    return True
