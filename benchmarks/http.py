"""HTTP inference: the gateway against the limit (a bare ASGI app) and the peers users
would pick instead (FastAPI, sync and async; MLServer; KServe).

Each server runs in turn as its own process pinned to one CPU, with wrk pinned to another,
over loopback. All of them receive the same Open Inference Protocol JSON request (one row
of the model's features: by default a row of the breast-cancer data set for the
scikit-learn classifier) and must answer it with the model's own outputs. The model's own
cost (ONNX Runtime, batch 1, in-process) is measured too, as the limit for inference. Per
server and connection count: the median of several wrk runs, after one warm-up run, with
the CPU time the server's processes used per request (read from /proc around each run).
MLServer and KServe run from virtual environments the first run installs (minutes).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import os
import shutil
import sys
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks import http_peers, kserve, mlserver, venvs
from benchmarks import http_summary as summary
from benchmarks.http_peers import KSERVE, LIMIT, MLSERVER, PEERS
from benchmarks.models import (
    MODELS,
    build_artifacts,
    check_answer,
    infer_body,
    ort_limit,
    reference_path,
    register_all,
    request_row,
)
from benchmarks.otlp import Receiver, otlp_receiver
from benchmarks.report import Report, machine_info
from benchmarks.scenario import BenchmarkError
from benchmarks.servers import Server, cpu_seconds, post, serving
from benchmarks.wrk import WrkResult, post_script, require_wrk, run_wrk, wrk_version
from registry import ModelRegistry
from registry.deployment import Canary, Deployment
from registry.state import Change
from registry.state_embedded import EmbeddedState

PACKAGES = (
    *("driftgate", "litestar", "msgspec", "onnxruntime", "numpy"),
    *("uvicorn", "uvloop", "httptools", "fastapi", "pydantic", "scikit-learn", "skl2onnx"),
)
"""Whose versions the report records (the peers' own environments are recorded apart)."""
PEER_PACKAGES = ("onnxruntime", "numpy", "fastapi", "uvicorn", "pydantic")
BUSY_LOAD = 0.5
"""A 1-minute load average above this at the start means something else is running."""


@dataclass(frozen=True, kw_only=True)
class GatewayVariant:
    """One configuration of the gateway to measure."""

    name: str
    description: str
    environ: Mapping[str, str] = field(default_factory=dict)
    """`DRIFTGATE_*` settings of the server process."""
    setup: Callable[[Path], None] | None = None
    """Prepares its data directory (models already registered), e.g. a canary deployment."""
    otlp: bool = False
    """Exports its traces to an OTLP/HTTP receiver that the benchmark runs on loopback."""


def canary_at_ten_percent(home: Path) -> None:
    """Every model gets a version 2 (the same artifact) as a canary taking 10% of calls."""
    registry = ModelRegistry(home / "models")
    state = EmbeddedState(home / "state")
    for name in registry.models():
        manifest = registry.manifest(name, 1)
        model = home / "models" / name / "1" / "model.onnx"
        reference = reference_path(home.parent.parent / "artifacts" / f"{name}.onnx")
        registry.register(name, model, reference, description="benchmark canary")
        deployment = Deployment(
            model=name, stable=manifest.version, revision=1, canary=Canary(version=2, weight=10.0)
        )
        asyncio.run(
            state.commit(
                Change(
                    model=name,
                    action="deployment.set",
                    actor="bench",
                    expected_revision=0,
                    deployment=deployment,
                )
            )
        )


# Issue 6: "the gateway's infer with metrics on, sampling 10% and a canary at 10%; the same
# with batching". Metrics are always on.
_REAL_PATH = {"DRIFTGATE_SAMPLE_RATE": "0.1"}
GATEWAY_VARIANTS = (
    GatewayVariant(
        name="gateway",
        description="metrics, sampling 10%, canary at 10%",
        environ=_REAL_PATH,
        setup=canary_at_ten_percent,
    ),
    GatewayVariant(
        name=summary.BATCHED,
        description="the same, batching up to 32 rows",
        environ={**_REAL_PATH, "DRIFTGATE_BATCHING": '{"max_batch_size": 32}'},
        setup=canary_at_ten_percent,
    ),
    # Issue 12: what tracing costs at a production sampling rate (compare with `gateway`).
    GatewayVariant(
        name=summary.TRACED,
        description="the same as gateway, traced: 1% of calls sampled, exported over OTLP/HTTP",
        environ={
            **_REAL_PATH,
            "DRIFTGATE_TRACING": "true",
            "OTEL_TRACES_SAMPLER": "parentbased_traceidratio",
            "OTEL_TRACES_SAMPLER_ARG": "0.01",
        },
        setup=canary_at_ten_percent,
        otlp=True,
    ),
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The scenario's options."""
    names = [LIMIT, *(variant.name for variant in GATEWAY_VARIANTS), *PEERS]
    parser.add_argument(
        "--connections",
        type=positive,
        nargs="+",
        default=[1, 16, 64],
        metavar="N",
        help="connection counts to measure (default: 1 16 64)",
    )
    parser.add_argument("--duration", type=positive, metavar="S", help="seconds per run (5)")
    parser.add_argument(
        "--runs", type=positive, metavar="N", help="runs per point, the median reported (3)"
    )
    parser.add_argument(
        "--quick", action="store_true", help="smoke test: 1 run of 1 s (unless given above)"
    )
    parser.add_argument(
        "--interleave",
        action="store_true",
        help="run the servers at once, their runs taking turns (fairer ratios on a busy machine)",
    )
    parser.add_argument(
        "--model", choices=MODELS, default=MODELS[0], help=f"the model served ({MODELS[0]})"
    )
    parser.add_argument(
        "--servers",
        nargs="+",
        choices=names,
        default=names,
        metavar="NAME",
        help=f"only these servers (default all: {' '.join(names)})",
    )
    parser.add_argument(
        "--cache",
        type=Path,
        default=venvs.default_cache(),
        help="where MLServer's and KServe's environments are kept (default %(default)s)",
    )


@dataclass(frozen=True, kw_only=True)
class _Load:
    """How every server is loaded: the same wrk script, durations and CPU for all."""

    wrk: str
    script: Path
    connections: list[int]
    duration_s: int
    runs: int
    cpu: int | None

    def once(self, url: str, connections: int) -> WrkResult:
        """One wrk run against `url`."""
        return run_wrk(
            self.wrk,
            url,
            self.script,
            connections=connections,
            duration_s=self.duration_s,
            cpu=self.cpu,
        )


def run(args: argparse.Namespace) -> Report:
    """Measure every server and summarise; see the module docstring."""
    wrk = require_wrk()
    if shutil.which("taskset") is None:
        raise BenchmarkError("taskset is not on PATH (Debian: `apt-get install -y util-linux`)")
    server_cpu, load_cpu = _cpus()
    machine = machine_info(PACKAGES)
    if machine.load_average[0] > BUSY_LOAD:
        _progress(f"warning: load average {machine.load_average[0]}: other work will skew figures")
    with (
        tempfile.TemporaryDirectory(prefix="driftgate-bench-") as temp,
        otlp_receiver() as receiver,
    ):
        root = Path(temp)
        artifacts = build_artifacts(root / "artifacts")
        row = request_row(args.model)
        body = infer_body(row)
        load = _Load(
            wrk=wrk,
            script=post_script(body, root / "post.lua"),
            connections=args.connections,
            duration_s=args.duration or (1 if args.quick else 5),
            runs=args.runs or (1 if args.quick else 3),
            cpu=load_cpu,
        )
        _progress(f"ONNX Runtime alone, {args.model}, batch 1")
        limit = ort_limit(artifacts[args.model], row, cpu=server_cpu)
        servers = _servers(root, artifacts, args, receiver)
        measurements = []
        # In turn, each server alone; or all at once, their runs taking turns, so that a
        # change in the machine's other load falls on every server alike.
        for group in [servers] if args.interleave else [[server] for server in servers]:
            with contextlib.ExitStack() as stack:
                targets = []
                for server in group:
                    log = root / f"{server.name}.log"
                    running = stack.enter_context(
                        serving(server, cpu=server_cpu, log=log, timeout_s=120)
                    )
                    target = _Target(
                        server.name, f"{running.url}/v2/models/{args.model}/infer", running.pid
                    )
                    answer = post(target.url, body)  # a 200 first: never measure an error page
                    if server.role != "limit":
                        check_answer(server.name, answer, limit.outputs)
                    targets.append(target)
                measurements += _measure(targets, load)
    options = {
        "model": args.model,
        "connections": load.connections,
        "duration_s": load.duration_s,
        "runs": load.runs,
        "server_cpu": server_cpu,
        "load_cpu": load_cpu,
        "wrk": wrk_version(wrk),
        "request_bytes": len(body),
        "otlp_spans_received": receiver.spans,
        "interleaved": args.interleave,
        "servers": {s.name: {"role": s.role, "description": s.description} for s in servers},
        "peer_environments": _peer_environments(args),
    }
    roles = {server.name: server.role for server in servers}
    title = (
        f"median of {load.runs} x {load.duration_s} s wrk runs, model {args.model}, "
        f"server on CPU {server_cpu}, wrk on CPU {load_cpu}"
    )
    return Report(
        scenario="http",
        machine=machine,
        options=options,
        tables=summary.tables(measurements, limit.call_us, roles, title),
        checks=summary.checks(measurements, limit.call_us, roles),
        runs=measurements,
    )


@dataclass(frozen=True)
class _Target:
    """A running server's infer URL and process."""

    name: str
    url: str
    pid: int


def _measure(targets: list[_Target], load: _Load) -> list[summary.Measurement]:
    """One warm-up run each at the most connections, then `runs` runs per connection count
    (the targets taking turns), each with the CPU time the server (its process and
    workers) used meanwhile."""
    for target in targets:
        _progress(f"{target.name}: warm-up")
        load.once(target.url, max(load.connections))
    measurements = []
    for connections in load.connections:
        for index in range(load.runs):
            for target in targets:
                before = cpu_seconds(target.pid)
                result = load.once(target.url, connections)
                cpu = cpu_seconds(target.pid) - before
                point = summary.measurement(target.name, connections, result, cpu_seconds=cpu)
                measurements.append(point)
                _progress(
                    f"{target.name} c={connections} run {index + 1}/{load.runs}: "
                    f"{point.requests_per_s:,.0f} req/s, p50 {point.p50_ms:.3f} ms, "
                    f"{point.cpu_us:.1f} CPU us/req"
                )
    return measurements


def _servers(
    root: Path, artifacts: Mapping[str, Path], args: argparse.Namespace, receiver: Receiver
) -> list[Server]:
    """The limit, every gateway variant (each with a fresh data directory), then the peers:
    those of `args.servers`, in that order."""
    servers = [http_peers.limit()]
    for variant in GATEWAY_VARIANTS:
        if variant.name not in args.servers:
            continue
        home = root / "homes" / variant.name
        register_all(home, dict(artifacts))
        if variant.setup is not None:
            variant.setup(home)
        servers.append(
            Server(
                name=variant.name,
                role="subject",
                description=variant.description,
                command=functools.partial(gateway_command, home),
                environ={
                    "DRIFTGATE_LOG_LEVEL": "warning",
                    # REST only: interleaved gateways would all claim gRPC's default port.
                    "DRIFTGATE_GRPC_PORT": "0",
                    **variant.environ,
                    **({"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url} if variant.otlp else {}),
                },
            )
        )
    servers += http_peers.peers(
        args.servers,
        root=root,
        model=artifacts[args.model],
        model_name=args.model,
        cache=args.cache,
    )
    return [server for server in servers if server.name in args.servers]


def _peer_environments(args: argparse.Namespace) -> dict[str, dict[str, str]]:
    """The versions installed in the peers' own environments, for the report."""
    found = {}
    if MLSERVER in args.servers:
        python = mlserver.mlserver_command(args.cache).parent / "python"
        found[MLSERVER] = venvs.versions(python, ("mlserver", *PEER_PACKAGES))
    if KSERVE in args.servers:
        found[KSERVE] = venvs.versions(kserve.kserve_python(args.cache), ("kserve", *PEER_PACKAGES))
    return found


def gateway_command(home: Path, port: int, *, workers: int = 1) -> list[str]:
    """`driftgate serve` over the data directory `home` on `port`, with `workers` processes."""
    return [
        *(sys.executable, "-m", "gateway", "serve"),
        *(f"--home={home}", f"--port={port}", f"--workers={workers}"),
    ]


def _cpus() -> tuple[int | None, int | None]:
    """The server's CPU and wrk's: the first two this process may use."""
    allowed = sorted(os.sched_getaffinity(0))
    if len(allowed) < 2:
        _progress("warning: fewer than 2 CPUs: server and wrk share one, figures will be low")
        return None, None
    return allowed[0], allowed[1]


def positive(text: str) -> int:
    """An argparse type: an integer of at least 1."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def _progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)
