"""Where the registry keeps its files: a local directory, or a bucket (`object_storage.py`).

Both hold the same layout under their root::

    <name>/<version>/model.onnx      the artifact
    <name>/<version>/manifest.json   its Manifest, written last

and promise the same: a version is published whole or not at all, and two registrations
racing for one number cannot both get it (`publish` tells the loser, which takes the next).

On disk a version directory is assembled under a temporary name and renamed into place. The
temporary directory is named after its process (`.staging-<pid>.<host>-<random>`): what a killed
registration left is removed by the next registration of that model, and by `sweep`. A
version directory counts as a version whatever its state, so its number is never reused.
"""

from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path
from typing import Protocol

from registry.errors import InvalidNameError
from registry.files import make_scratch, sweep_scratch, write_durably
from registry.names import parse_version

ARTIFACT = "model.onnx"
MANIFEST = "manifest.json"
STAGING = ".staging-"


class VersionStorage(Protocol):
    """The files of the registry's versions, wherever they are kept."""

    @property
    def location(self) -> str:
        """Where the files are, as an operator would write it (no credentials)."""
        ...

    def names(self) -> list[str]:
        """Entries under the root that may be models (unvalidated, unsorted)."""
        ...

    def versions(self, name: str) -> list[int]:
        """Published version numbers of `name` (`name` is validated by the caller)."""
        ...

    def read(self, name: str, version: int, filename: str) -> bytes:
        """One file of a version.

        Raises:
            FileNotFoundError: the file is missing.
            OSError: it cannot be read (a damaged disk).
            StoreUnavailableError: the store cannot be reached.
        """
        ...

    def publish(self, name: str, version: int, artifact: bytes, manifest: bytes) -> bool:
        """Publish a version under `version` if that number is free; False if it was taken."""
        ...

    def sweep(self) -> list[str]:
        """Remove what killed registrations left; returns what was removed."""
        ...

    def check(self) -> None:
        """Return if the store answers.

        Raises:
            StoreUnavailableError: it does not, saying why.
        """
        ...


class LocalStorage:
    """Versions as read-only directories under a local (or mounted) directory."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    @property
    def location(self) -> str:
        return str(self.root)

    def names(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return [
            entry.name
            for entry in self.root.iterdir()
            if not entry.name.startswith(".") and entry.is_dir()
        ]

    def versions(self, name: str) -> list[int]:
        model_dir = self.root / name
        if not model_dir.is_dir():
            return []
        return [
            number
            for entry in model_dir.iterdir()
            if (number := version_number(entry.name)) is not None and entry.is_dir()
        ]

    def read(self, name: str, version: int, filename: str) -> bytes:
        return (self.root / name / str(version) / filename).read_bytes()

    def publish(self, name: str, version: int, artifact: bytes, manifest: bytes) -> bool:
        model_dir = self.root / name
        sweep_scratch(model_dir, STAGING)
        staging = make_scratch(model_dir, STAGING)
        try:
            _write_readonly(staging / ARTIFACT, artifact)
            _write_readonly(staging / MANIFEST, manifest)
            try:
                staging.rename(model_dir / str(version))
            except OSError as exc:
                if exc.errno in (errno.EEXIST, errno.ENOTEMPTY):
                    return False  # another registration took this number first
                raise
            os.chmod(model_dir / str(version), 0o555)  # noqa: S103 - read-only, like its files
            return True
        finally:
            if staging.exists():
                shutil.rmtree(staging, ignore_errors=True)

    def sweep(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return [
            str(removed)
            for entry in self.root.iterdir()
            if entry.is_dir() and not entry.name.startswith(".")
            for removed in sweep_scratch(entry, STAGING)
        ]

    def check(self) -> None:
        return None  # a local directory answers, or every file operation says why


def version_number(entry: str) -> int | None:
    """The version an entry's name holds in canonical form ("7", not "07" or "²")."""
    try:
        number = parse_version(entry)
    except InvalidNameError:
        return None
    return number if str(number) == entry else None


def _write_readonly(path: Path, data: bytes) -> None:
    write_durably(path, data)
    path.chmod(0o444)
