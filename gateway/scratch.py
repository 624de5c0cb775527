"""Scratch directories that a crash cannot leave behind for long.

Each is named after the process that made it (`PREFIX<pid>.<host>-<random>`) and removed when
that process is done with it; what a killed process left is removed by `sweep` at the next
start, which never touches the directory of a process still running (another worker, or
another gateway on the same host).
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from registry.files import make_scratch, sweep_scratch


def make(prefix: str, parent: Path | None = None) -> Path:
    """A new directory owned by this process (under the system's temporary directory
    unless `parent` is given); the caller removes it."""
    return make_scratch(Path(tempfile.gettempdir()) if parent is None else parent, prefix)


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
    return sweep_scratch(Path(tempfile.gettempdir()) if parent is None else parent, prefix)
