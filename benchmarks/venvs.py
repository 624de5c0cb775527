"""Peers in virtual environments of their own, each installed once under a cache directory.

MLServer and KServe pin what driftgate cannot share (protobuf, FastAPI, their own
OpenTelemetry exporters), and each other's versions, so the benchmark installs each with
pip from PyPI into an environment of its own on first use and runs the peer from there.
An environment is keyed by its name and remembers the pins it was made with: change the
pins and it is made again; a half-made one (an install that failed) is never used.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from benchmarks.scenario import BenchmarkError

INSTALL_TIMEOUT_S = 1200
_MARKER = ".installed"  # written last, holding the pins: the environment is complete


def default_cache() -> Path:
    """`$XDG_CACHE_HOME/driftgate-bench`, else `~/.cache/driftgate-bench`."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "driftgate-bench"


def environment(cache: Path, name: str, packages: Sequence[str], *, leave_out: str) -> Path:
    """The Python of environment `name` under `cache` with `packages` installed, made first
    if it is missing, incomplete or made with other pins.

    `leave_out` says how to run the benchmark without this peer, should pip fail.
    """
    directory = cache / name
    python = directory / "bin" / "python"
    marker = directory / _MARKER
    pins = "\n".join(packages) + "\n"
    if python.exists() and marker.exists() and marker.read_text() == pins:
        return python
    _progress(
        f"installing {' '.join(packages)} into {directory} (once; this may take a few minutes)"
    )
    started = time.monotonic()
    shutil.rmtree(directory, ignore_errors=True)
    try:
        subprocess.run([sys.executable, "-m", "venv", str(directory)], check=True)
        # pip's lines are the progress; they go to stderr, where the benchmark's progress
        # goes, so stdout keeps only the report.
        subprocess.run(
            [str(python), "-m", "pip", "install", "--progress-bar=off", *packages],
            check=True,
            stdout=sys.stderr,
            timeout=INSTALL_TIMEOUT_S,
        )
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
        raise BenchmarkError(
            f"could not install {name} into {directory} ({exc}); {leave_out}"
        ) from exc
    marker.write_text(pins)
    _progress(f"{name} installed in {time.monotonic() - started:.0f} s")
    return python


def _progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def versions(python: Path, packages: Sequence[str]) -> dict[str, str]:
    """The installed versions of `packages` (those present) in the environment of `python`."""
    script = (
        "import json, sys\n"
        "from importlib import metadata\n"
        "found = {}\n"
        "for name in sys.argv[1:]:\n"
        "    try:\n"
        "        found[name] = metadata.version(name)\n"
        "    except metadata.PackageNotFoundError:\n"
        "        pass\n"
        "print(json.dumps(found))\n"
    )
    done = subprocess.run(
        [str(python), "-c", script, *packages], capture_output=True, text=True, check=True
    )
    found: dict[str, str] = json.loads(done.stdout)
    return found
