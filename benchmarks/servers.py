"""Servers under test: each a subprocess on a free loopback port, pinned to one CPU, stopped after.

A separate process per server (rather than threads in this one) keeps the servers from
sharing an interpreter, a GIL or an event loop with the benchmark, and lets `taskset` give
each the same single core, so their figures compare.
"""

from __future__ import annotations

import functools
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks.scenario import BenchmarkError

HOST = "127.0.0.1"  # loopback only: nothing here should be reachable from outside
REPOSITORY = Path(__file__).resolve().parent.parent


@dataclass(frozen=True, kw_only=True)
class Server:
    """How to start one server under test."""

    name: str
    """Short name, used in tables and on the command line."""
    role: str
    """`limit`, `subject` or `peer`: what the others are compared with."""
    description: str
    command: Callable[[int], Sequence[str]]
    """The command line that serves on the given port."""
    environ: Mapping[str, str] = field(default_factory=dict)
    ready_path: str = "/v2/health/ready"
    ready: Callable[[str], bool] | None = None
    """Whether the server at `host:port` answers, when it speaks no HTTP (gRPC); None: a
    200 from `ready_path`."""


def uvicorn_command(app: str, port: int) -> list[str]:
    """uvicorn with the settings the gateway itself runs with (uvloop, httptools, no access log)."""
    return [
        sys.executable,
        "-m",
        "uvicorn",
        app,
        f"--host={HOST}",
        f"--port={port}",
        "--loop=uvloop",
        "--http=httptools",
        "--no-access-log",
        "--log-level=warning",
    ]


Cpus = int | Sequence[int] | None
"""Where a process may run: one CPU, several, or anywhere (None)."""


def pinned(command: Sequence[str], cpu: Cpus) -> list[str]:
    """`command` run under `taskset` on `cpu` (one or several CPUs), or as it is for None.

    taskset execs the command, so the pid a caller gets is the command's own.
    """
    if cpu is None:
        return list(command)
    cpus = [cpu] if isinstance(cpu, int) else list(cpu)
    return ["taskset", "--cpu-list", ",".join(map(str, cpus)), *command]


def free_port() -> int:
    """A loopback TCP port that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass(frozen=True)
class Running:
    """A server that answers: where, and its process (whose workers are its children)."""

    url: str
    pid: int


@contextmanager
def serving(server: Server, *, cpu: Cpus, log: Path, timeout_s: float = 60) -> Iterator[Running]:
    """Run `server` until the block ends; yields it once it answers ready.

    Its output goes to `log`, whose tail is quoted if it fails to start.
    """
    port = free_port()
    command = pinned(server.command(port), cpu)
    with log.open("wb") as output:
        process = subprocess.Popen(
            command,
            cwd=REPOSITORY,
            env={**os.environ, **server.environ},
            stdout=output,
            stderr=subprocess.STDOUT,
        )
        url = f"http://{HOST}:{port}"
        try:
            if server.ready is None:
                _wait_ready(url + server.ready_path, process, log, timeout_s)
            else:
                _wait(
                    functools.partial(server.ready, f"{HOST}:{port}"), url, process, log, timeout_s
                )
            yield Running(url, process.pid)
        finally:
            process.terminate()
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system) used so far by process `pid` and every live descendant
    (uvicorn's workers), from /proc: what a server costs, whatever its process layout."""
    children: dict[int, list[int]] = {}
    used: dict[int, float] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue  # it exited meanwhile
        # Fields after the command name, which is in parentheses and may hold spaces.
        fields = text[text.rindex(")") + 2 :].split()
        process = int(stat.parent.name)
        children.setdefault(int(fields[1]), []).append(process)
        used[process] = (int(fields[11]) + int(fields[12])) / _TICKS
    total, stack = 0.0, [pid]
    while stack:
        process = stack.pop()
        total += used.get(process, 0.0)
        stack += children.get(process, [])
    return total


_TICKS = os.sysconf("SC_CLK_TCK")


def _wait_ready(url: str, process: subprocess.Popen[bytes], log: Path, timeout_s: float) -> None:
    def answers() -> bool:
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                return bool(response.status == 200)
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            return False

    _wait(answers, url, process, log, timeout_s)


def _wait(
    ready: Callable[[], bool],
    url: str,
    process: subprocess.Popen[bytes],
    log: Path,
    timeout_s: float,
) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise BenchmarkError(f"server exited with {process.returncode}:\n{_tail(log)}")
        if ready():
            return
        time.sleep(0.1)
    raise BenchmarkError(f"server not ready at {url} after {timeout_s:.0f} s:\n{_tail(log)}")


def _tail(log: Path, lines: int = 20) -> str:
    return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])


def post(url: str, body: bytes) -> bytes:
    """POST `body` as JSON and return the response body; any non-200 is a `BenchmarkError`.

    Used once per server before loading it, so that a benchmark never measures error pages.
    """
    request = urllib.request.Request(
        url, data=body, method="POST", headers={"content-type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            data: bytes = response.read()
            return data
    except urllib.error.HTTPError as exc:
        raise BenchmarkError(f"POST {url} answered {exc.code}: {exc.read()[:500]!r}") from exc
    except (urllib.error.URLError, OSError) as exc:
        raise BenchmarkError(f"POST {url} failed: {exc}") from exc
