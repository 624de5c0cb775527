"""Load generation with wrk: one run pinned to a CPU, its result read back as JSON.

wrk (a C load generator, one thread per core) is used rather than a Python client because a
Python client would be slower than the servers it measures. Its own report is made for
people; the Lua `done` callback below prints the same figures as one JSON line instead, so
nothing depends on parsing wrk's human-readable units.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import msgspec

from benchmarks.scenario import BenchmarkError
from benchmarks.servers import Cpus, pinned

INSTALL_HINT = (
    "wrk is not on PATH. Install it (Debian/Ubuntu: `apt-get install -y wrk`; "
    "macOS: `brew install wrk`) and run again."
)
_MARKER = "WRK-RESULT "

# The body goes in a Lua long string, so it needs no escaping (JSON never contains `]==]`).
_SCRIPT = """\
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = [==[{body}]==]

done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '{marker}{{"requests":%.0f,"duration_us":%.0f,"socket_errors":%.0f,"status_errors":%.0f,'
      .. '"latency_us":{{"mean":%.1f,"p50":%.1f,"p90":%.1f,"p99":%.1f,"max":%.1f}}}}\\n',
    summary.requests, summary.duration, e.connect + e.read + e.write + e.timeout, e.status,
    latency.mean, latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency.max))
end
"""


class Latency(msgspec.Struct, frozen=True, kw_only=True):
    """Latency of the run's requests, in microseconds."""

    mean: float
    p50: float
    p90: float
    p99: float
    max: float


class WrkResult(msgspec.Struct, frozen=True, kw_only=True):
    """One wrk run, as its `done` callback reports it."""

    requests: int
    duration_us: int
    socket_errors: int
    """connect, read, write and timeout errors."""
    status_errors: int
    """Responses other than 2xx/3xx."""
    latency_us: Latency

    @property
    def requests_per_s(self) -> float:
        """Completed requests per second of the run."""
        return self.requests / (self.duration_us / 1e6) if self.duration_us else 0.0


def require_wrk() -> str:
    """The path of `wrk`, or a `BenchmarkError` saying how to install it."""
    path = shutil.which("wrk")
    if path is None:
        raise BenchmarkError(INSTALL_HINT)
    return path


def wrk_version(wrk: str) -> str:
    """wrk's version line (it prints it, with usage, to stdout and exits 1)."""
    output = subprocess.run([wrk, "--version"], capture_output=True, text=True, check=False)
    lines = (output.stdout or output.stderr).splitlines()
    return lines[0].strip() if lines else "unknown"


def post_script(body: bytes, path: Path) -> Path:
    """Write a wrk Lua script that POSTs `body` as JSON and reports as JSON; returns `path`."""
    text = body.decode()
    if "]==]" in text:
        raise ValueError("the body cannot contain ']==]'")
    path.write_text(_SCRIPT.format(body=text, marker=_MARKER))
    return path


def run_wrk(
    wrk: str,
    url: str,
    script: Path,
    *,
    connections: int,
    duration_s: int,
    cpu: Cpus,
    threads: int = 1,
) -> WrkResult:
    """One wrk run of `duration_s` seconds with `threads` threads (one per core it is
    given: one by default), pinned to `cpu` if given."""
    command = [
        wrk,
        f"--threads={threads}",
        f"--connections={connections}",
        f"--duration={duration_s}s",
        "--timeout=10s",
        f"--script={script}",
        url,
    ]
    output = subprocess.run(
        pinned(command, cpu), capture_output=True, text=True, check=False, timeout=duration_s + 30
    )
    for line in output.stdout.splitlines():
        if line.startswith(_MARKER):
            return msgspec.json.decode(line[len(_MARKER) :], type=WrkResult)
    raise BenchmarkError(
        f"wrk printed no result (exit {output.returncode}): {output.stderr or output.stdout}"
    )
