"""A replica's local copies of artifacts from a remote registry, checked before each use.

Copies are named by their sha256, so a version is fetched once per replica, whatever its
number, and a copy is never stale. A copy is trusted no more than the store: its digest is
computed again before every load, and a copy that differs (a disk, an intruder) is removed
and fetched again from the store, whose bytes are checked in turn.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
from pathlib import Path

from registry.files import replace_file, sweep_temporary

logger = logging.getLogger(__name__)


class ArtifactCache:
    """Artifacts by sha256 under one local directory."""

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)

    def get(self, sha256: str) -> bytes | None:
        """The cached artifact with this digest, or None (absent, unreadable or altered)."""
        path = self._path(sha256)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            logger.warning("cannot read the cached artifact %s (%s); fetching it", path, exc)
            return None
        if hashlib.sha256(data).hexdigest() == sha256:
            return data
        logger.warning("the cached artifact %s was altered; removing it and fetching it", path)
        with contextlib.suppress(OSError):
            path.unlink()
        return None

    def put(self, sha256: str, data: bytes) -> None:
        """Keep a verified artifact; a failure (a full disk) only costs a later fetch."""
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            replace_file(self._path(sha256), data)
        except OSError as exc:
            logger.warning("cannot cache artifact %s: %s", sha256[:12], exc)

    def sweep(self) -> list[str]:
        """Remove copies half-written by a killed process."""
        return [str(path) for path in sweep_temporary(self.directory)]

    def _path(self, sha256: str) -> Path:
        if len(sha256) != 64 or not all(c in "0123456789abcdef" for c in sha256):
            raise ValueError(f"not a sha256 digest: {sha256!r}")
        return self.directory / f"{sha256}.onnx"
