"""Workers: how the gateway scales with `driftgate serve --workers N` (1, 2, 4 and 8).

One command for a many-core machine. The gateway serves the `http` scenario's real path
(metrics, sampling 10%, a canary at 10%) with N worker processes pinned to N cores of
their own; wrk runs on the cores left over after the largest N, one thread per core, the
same for every N, so the load generator never changes between the rows it compares. Every
N gets the same request (the `http` scenario's, for the classifier by default), checked
against the model's own answer first. Per N: the median of several wrk runs after a
warm-up, with the CPU time the server's processes used per request (from /proc), and the
scaling in req/s against 1 worker.

Only the counts the machine has cores for (N plus at least one for wrk) run by default; the
others are skipped, saying so. Counts given with `--workers` all run: where they do not fit,
nothing is pinned and the server and wrk share every core (a warning says so), which is
how the issue's 2-worker target is measured on a 2-core machine.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import os
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from benchmarks import http_summary as summary
from benchmarks.http import GATEWAY_VARIANTS, PACKAGES, gateway_command, positive
from benchmarks.models import (
    MODELS,
    build_artifacts,
    check_answer,
    infer_body,
    ort_limit,
    register_all,
    request_row,
)
from benchmarks.report import Cell, Check, Report, Table, check, machine_info
from benchmarks.scenario import BenchmarkError
from benchmarks.servers import Cpus, Server, cpu_seconds, post, serving
from benchmarks.wrk import post_script, require_wrk, run_wrk, wrk_version

DEFAULT_WORKERS = (1, 2, 4, 8)
AT_LEAST_TWO_WORKERS = 1.7  # issue 15: 2 workers >= 1.7 x 1 worker in req/s


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The scenario's options."""
    parser.add_argument(
        "--workers",
        type=positive,
        nargs="+",
        metavar="N",
        help=(
            f"worker counts to measure (default: {' '.join(map(str, DEFAULT_WORKERS))}, "
            "those the machine has cores for)"
        ),
    )
    parser.add_argument(
        "--connections", type=positive, default=128, metavar="N", help="wrk connections (128)"
    )
    parser.add_argument("--duration", type=positive, metavar="S", help="seconds per run (10)")
    parser.add_argument(
        "--runs", type=positive, metavar="N", help="runs per count, the median reported (3)"
    )
    parser.add_argument("--quick", action="store_true", help="smoke test: 1 run of 1 s")
    parser.add_argument(
        "--model", choices=MODELS, default=MODELS[0], help=f"the model served ({MODELS[0]})"
    )


@dataclass(frozen=True)
class CoreLayout:
    """Which worker counts run, and on which cores the server and wrk do."""

    counts: list[int]
    allowed: list[int]
    """The cores this process may use, in order."""
    pinned: bool
    """False: server and wrk share every core."""

    @property
    def load_cpus(self) -> list[int] | None:
        """wrk's cores: those past the largest server (None: anywhere)."""
        return self.allowed[max(self.counts) :] if self.pinned else None

    @property
    def load_threads(self) -> int:
        """One wrk thread per core it may use."""
        return len(self.load_cpus or self.allowed)

    def server_cpus(self, workers: int) -> Cpus:
        """The cores of the server with `workers` processes (None: anywhere)."""
        return self.allowed[:workers] if self.pinned else None

    def describe(self) -> str:
        """Where everything ran, for the table's title."""
        if not self.pinned:
            return f"nothing pinned: server and wrk ({self.load_threads} threads) share all cores"
        return (
            f"server on the first N of CPUs {self.allowed[: max(self.counts)]}, "
            f"wrk on CPUs {self.load_cpus} ({self.load_threads} threads)"
        )


def core_layout(counts: list[int], allowed: list[int], *, explicit: bool) -> CoreLayout:
    """Every count that leaves wrk a core; or, for counts named on the command line, all
    of them, unpinned where one does not fit."""
    fits = [count for count in counts if count < len(allowed)]
    if explicit and len(fits) < len(counts):
        _progress(
            f"warning: {len(allowed)} cores cannot give {max(counts)} workers cores of "
            "their own and wrk one more: nothing is pinned, server and wrk share every core"
        )
        return CoreLayout(counts=counts, allowed=allowed, pinned=False)
    if skipped := sorted(set(counts) - set(fits)):
        _progress(
            f"skipping {skipped} workers: {len(allowed)} cores, one kept for wrk "
            "(name the counts with --workers to run them anyway, unpinned)"
        )
    if not fits:
        raise BenchmarkError(f"no worker count fits {len(allowed)} cores with one for wrk")
    return CoreLayout(counts=fits, allowed=allowed, pinned=True)


def run(args: argparse.Namespace) -> Report:
    """Measure the gateway at every worker count; see the module docstring."""
    wrk = require_wrk()
    if shutil.which("taskset") is None:
        raise BenchmarkError("taskset is not on PATH (Debian: `apt-get install -y util-linux`)")
    allowed = sorted(os.sched_getaffinity(0))
    layout = core_layout(
        sorted(set(args.workers or DEFAULT_WORKERS)), allowed, explicit=args.workers is not None
    )
    connections = max(args.connections, layout.load_threads)  # wrk needs one per thread
    duration = args.duration or (1 if args.quick else 10)
    runs = args.runs or (1 if args.quick else 3)
    machine = machine_info(PACKAGES)
    variant = GATEWAY_VARIANTS[0]  # the real path, as the http scenario's `gateway`
    measurements: list[summary.Measurement] = []
    with tempfile.TemporaryDirectory(prefix="driftgate-bench-workers-") as temp:
        root = Path(temp)
        artifacts = build_artifacts(root / "artifacts")
        row = request_row(args.model)
        body = infer_body(row)
        script = post_script(body, root / "post.lua")
        expected = ort_limit(artifacts[args.model], row, calls=100, cpu=None).outputs
        home = root / "homes" / "gateway"
        register_all(home, artifacts)
        if variant.setup is not None:
            variant.setup(home)
        load = functools.partial(
            run_wrk,
            wrk,
            script=script,
            connections=connections,
            duration_s=duration,
            cpu=layout.load_cpus,
            threads=layout.load_threads,
        )
        for workers in layout.counts:
            name = f"workers={workers}"
            server = Server(
                name=name,
                role="subject",
                description=f"driftgate serve --workers {workers}: {variant.description}",
                command=functools.partial(gateway_command, home, workers=workers),
                environ={"DRIFTGATE_LOG_LEVEL": "warning", **variant.environ},
            )
            log = root / f"workers-{workers}.log"
            cpus = layout.server_cpus(workers)
            with contextlib.ExitStack() as stack:
                running = stack.enter_context(serving(server, cpu=cpus, log=log, timeout_s=180))
                url = f"{running.url}/v2/models/{args.model}/infer"
                check_answer(name, post(url, body), expected)
                _progress(f"{name}: warm-up")
                load(url)
                for index in range(runs):
                    before = cpu_seconds(running.pid)
                    result = load(url)
                    used = cpu_seconds(running.pid) - before
                    point = summary.measurement(name, workers, result, cpu_seconds=used)
                    measurements.append(point)
                    _progress(
                        f"{name} run {index + 1}/{runs}: {point.requests_per_s:,.0f} req/s, "
                        f"p50 {point.p50_ms:.3f} ms, {point.cpu_us:.1f} CPU us/req"
                    )
    title = (
        f"median of {runs} x {duration} s wrk runs, model {args.model}, {connections} "
        f"connections, {layout.describe()}"
    )
    table, checks = _summary(measurements, title)
    options = {
        "model": args.model,
        "workers": layout.counts,
        "pinned": layout.pinned,
        "load_cpus": layout.load_cpus,
        "wrk_threads": layout.load_threads,
        "connections": connections,
        "duration_s": duration,
        "runs": runs,
        "wrk": wrk_version(wrk),
        "request_bytes": len(body),
        "gateway": variant.description,
    }
    return Report(
        scenario="workers",
        machine=machine,
        options=options,
        tables=[table],
        checks=checks,
        runs=measurements,
    )


def _summary(measurements: list[summary.Measurement], title: str) -> tuple[Table, list[Check]]:
    """Medians per worker count, scaling against 1 worker, and the 2-worker target.

    A measurement's `connections` field holds its worker count here.
    """
    by_count = {workers: point for (_, workers), point in summary.points(measurements).items()}
    one = by_count.get(1)
    rows: list[tuple[Cell, ...]] = []
    for workers, point in by_count.items():
        scaling = point.requests_per_s / one.requests_per_s if one else None
        rows.append(
            (
                workers,
                point.requests_per_s,
                point.p50_ms,
                point.p99_ms,
                point.cpu_us,
                scaling,
                scaling / workers if scaling is not None else None,
                point.cpu_us / one.cpu_us if one else None,
                100 * point.spread,
                point.socket_errors,
            )
        )
    columns = (
        *("workers", "req/s", "p50 ms", "p99 ms", "CPU us/req", "x 1 worker"),
        *("x 1 worker / N", "CPU/req x 1 worker", "spread %", "sock err"),
    )
    checks = []
    if one is not None and 2 in by_count:
        checks.append(
            check(
                "2 workers req/s / 1 worker's",
                by_count[2].requests_per_s / one.requests_per_s,
                AT_LEAST_TWO_WORKERS,
                at_least=True,
            )
        )
    return Table(title=title, columns=columns, rows=tuple(rows)), checks


def _progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)
