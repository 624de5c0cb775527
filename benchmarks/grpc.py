"""gRPC inference: the gateway's ModelInfer against the limit (a bare grpc.aio servicer
answering a fixed response) and a peer (MLServer's gRPC server on the same model).

Each server runs in turn as its own process pinned to one CPU, with the load generator
(`benchmarks.grpc_load`, grpc.aio: ghz is not packaged for any registry here) pinned to
another. Every server receives the same serialized `ModelInferRequest`: one row of 20 FP32
features as raw_input_contents, as tritonclient sends it. The gateway serves the `http`
scenario's real path (metrics, sampling 10%, a canary at 10%). Per server and concurrency:
the median of several runs after a warm-up, with the CPU time the server's processes used
per call (read from /proc around each run).
"""

from __future__ import annotations

import argparse
import functools
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

import msgspec
import numpy as np

from benchmarks import mlserver, venvs
from benchmarks.grpc_load import GrpcLoadResult
from benchmarks.http import canary_at_ten_percent
from benchmarks.models import build_artifacts, ort_limit, register_all, request_row
from benchmarks.report import Check, Report, Table, check, machine_info
from benchmarks.scenario import BenchmarkError
from benchmarks.servers import REPOSITORY, Server, cpu_seconds, free_port, pinned, serving

LIMIT, SUBJECT, PEER = "raw-grpc", "gateway", "mlserver"
METHOD = "/inference.GRPCInferenceService/ModelInfer"
AT_LEAST_LIMIT_SHARE = 0.5  # issue 14: the gateway's req/s >= 0.5 x the bare servicer
PACKAGES = ("driftgate", "grpcio", "protobuf", "onnxruntime", "numpy", "uvloop")


class Measurement(msgspec.Struct, frozen=True, kw_only=True):
    """One load run against one server."""

    server: str
    concurrency: int
    requests_per_s: float
    p50_ms: float
    p99_ms: float
    cpu_us: float
    """CPU time the server's processes used per call (user + system, from /proc)."""
    load: GrpcLoadResult


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The scenario's options."""
    names = [LIMIT, SUBJECT, PEER]
    parser.add_argument(
        "--concurrency",
        type=int,
        nargs="+",
        default=[1, 16, 64],
        metavar="N",
        help="calls in flight to measure (default: 1 16 64)",
    )
    parser.add_argument("--duration", type=float, metavar="S", help="seconds per run (5)")
    parser.add_argument("--runs", type=int, metavar="N", help="runs per point, median (3)")
    parser.add_argument("--quick", action="store_true", help="smoke test: 1 run of 1 s")
    # The 20-feature models: the load and the answer check read one FP32 output.
    parser.add_argument("--model", choices=["mlp", "tiny"], default="mlp", help="(mlp)")
    parser.add_argument(
        "--servers", nargs="+", choices=names, default=names, metavar="NAME", help=" ".join(names)
    )
    parser.add_argument(
        "--cache",
        type=Path,
        default=venvs.default_cache(),
        help="where MLServer's virtual environment is kept (default %(default)s)",
    )


def run(args: argparse.Namespace) -> Report:
    """Measure every server and summarise; see the module docstring."""
    from gateway.grpc import protos  # the gateway's own copy of the protocol

    if shutil.which("taskset") is None:
        raise BenchmarkError("taskset is not on PATH (Debian: `apt-get install -y util-linux`)")
    allowed = sorted(os.sched_getaffinity(0))
    server_cpu, load_cpu = (allowed[0], allowed[1]) if len(allowed) > 1 else (None, None)
    machine = machine_info(PACKAGES)
    duration = args.duration or (1.0 if args.quick else 5.0)
    runs = args.runs or (1 if args.quick else 3)
    with tempfile.TemporaryDirectory(prefix="driftgate-bench-grpc-") as temp:
        root = Path(temp)
        artifacts = build_artifacts(root / "artifacts", [args.model])
        row = request_row(args.model)
        limit = ort_limit(artifacts[args.model], row, cpu=server_cpu)
        request = protos.ModelInferRequest(model_name=args.model)
        request.inputs.add(name="x", datatype="FP32", shape=[1, len(row)])
        request.raw_input_contents.append(np.asarray(row, "<f4").tobytes())
        request_file = root / "request.bin"
        request_file.write_bytes(request.SerializeToString())
        request_bytes = request_file.stat().st_size
        servers = _servers(root, artifacts[args.model], args, request_file.read_bytes())
        measurements: list[Measurement] = []
        for server in servers:
            if server.name not in args.servers:
                continue
            log = root / f"{server.name}.log"
            with serving(server, cpu=server_cpu, log=log, timeout_s=120) as running:
                target, process = running.url.removeprefix("http://"), running.pid
                if server.role != "limit":
                    _check_answer(server.name, target, request_file, limit.outputs[0].data)
                _progress(f"{server.name}: warm-up")
                _load(target, request_file, max(args.concurrency), duration, load_cpu)
                for concurrency in args.concurrency:
                    for index in range(runs):
                        before = cpu_seconds(process)
                        result = _load(target, request_file, concurrency, duration, load_cpu)
                        point = _measurement(server.name, concurrency, result, before, process)
                        measurements.append(point)
                        _progress(
                            f"{server.name} c={concurrency} run {index + 1}/{runs}: "
                            f"{point.requests_per_s:,.0f} req/s, p50 {point.p50_ms:.3f} ms, "
                            f"{point.cpu_us:.0f} CPU us/call"
                        )
    options = {
        "model": args.model,
        "concurrency": args.concurrency,
        "duration_s": duration,
        "runs": runs,
        "server_cpu": server_cpu,
        "load_cpu": load_cpu,
        "request_bytes": request_bytes,
        "ort_call_us": limit.call_us,
        "mlserver": mlserver.VERSION,
        "servers": {s.name: {"role": s.role, "description": s.description} for s in servers},
    }
    title = (
        f"median of {runs} x {duration:g} s runs, model {args.model}, server on CPU "
        f"{server_cpu}, load generator on CPU {load_cpu}"
    )
    table, checks = _summary(measurements, title)
    return Report(
        scenario="grpc",
        machine=machine,
        options=options,
        tables=[table],
        checks=checks,
        runs=measurements,
    )


def _servers(root: Path, model: Path, args: argparse.Namespace, request: bytes) -> list[Server]:
    """The limit, the gateway (a fresh data directory) and the peer, each ready once it
    answers `request`."""
    ready = functools.partial(_answers, request)
    home = root / "homes" / SUBJECT  # where canary_at_ten_percent finds the artifacts
    register_all(home, {args.model: model})
    canary_at_ten_percent(home)
    servers = [
        Server(
            name=LIMIT,
            role="limit",
            description="bare grpc.aio servicer on uvloop answering a fixed response",
            command=lambda port: [sys.executable, "-m", "benchmarks.peers.bare_grpc", str(port)],
            ready=ready,
        ),
        Server(
            name=SUBJECT,
            role="subject",
            description="driftgate serve: metrics, sampling 10%, canary at 10%",
            command=lambda port: [
                *(sys.executable, "-m", "gateway", "serve", f"--home={home}"),
                *(f"--port={free_port()}", f"--grpc-port={port}"),
            ],
            environ={"DRIFTGATE_LOG_LEVEL": "warning", "DRIFTGATE_SAMPLE_RATE": "0.1"},
            ready=ready,
        ),
    ]
    if PEER in args.servers:
        command = mlserver.mlserver_command(args.cache)

        def start_mlserver(port: int) -> list[str]:
            repository = mlserver.model_repository(
                root / "mlserver", model, args.model, grpc_port=port, http_port=free_port()
            )
            return [str(command), "start", str(repository)]

        servers.append(
            Server(
                name=PEER,
                role="peer",
                description=f"MLServer {mlserver.VERSION}, custom ONNX Runtime runtime",
                command=start_mlserver,
                ready=ready,
            )
        )
    return servers


def _answers(request: bytes, target: str) -> bool:
    """Whether the server at `target` answers ModelInfer (whatever the answer)."""
    import grpc

    with grpc.insecure_channel(target) as channel:
        call: grpc.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary(METHOD)
        try:
            call(request, timeout=2)
        except grpc.RpcError:
            return False
    return True


def _check_answer(server: str, target: str, request: Path, expected: Sequence[float]) -> None:
    """Refuse a server that does not answer with the model's output for the request."""
    import grpc
    from tritonclient.grpc import service_pb2  # another copy of the protocol than ours

    with grpc.insecure_channel(target) as channel:
        call: grpc.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary(METHOD)
        answer = call(request.read_bytes(), timeout=10)
    response = service_pb2.ModelInferResponse.FromString(answer)
    if response.raw_output_contents:
        got = np.frombuffer(response.raw_output_contents[0], "<f4").tolist()
    else:
        got = list(response.outputs[0].contents.fp32_contents)
    if not np.allclose(got, expected, rtol=1e-5, atol=1e-6):
        raise BenchmarkError(f"{server} answered {got}, the model gives {expected}")


def _load(
    target: str, request: Path, concurrency: int, duration: float, cpu: int | None
) -> GrpcLoadResult:
    command = [
        *(sys.executable, "-m", "benchmarks.grpc_load", target, METHOD, str(request)),
        *(f"--concurrency={concurrency}", f"--channels={min(concurrency, 4)}"),
        f"--duration={duration}",
    ]
    done = subprocess.run(
        pinned(command, cpu),
        cwd=REPOSITORY,
        capture_output=True,
        text=True,
        timeout=duration + 60,
        check=False,
    )
    if done.returncode != 0:
        raise BenchmarkError(f"the load generator failed: {done.stderr[-2000:]}")
    return msgspec.json.decode(done.stdout.strip().splitlines()[-1], type=GrpcLoadResult)


def _measurement(
    server: str, concurrency: int, result: GrpcLoadResult, before: float, process: int
) -> Measurement:
    """A run's figures; a run with failed calls is refused, not reported."""
    used = cpu_seconds(process) - before
    if result.errors or not result.requests:
        raise BenchmarkError(
            f"{server} failed {result.errors} calls at concurrency {concurrency} "
            f"({result.first_error}): that would measure errors"
        )
    return Measurement(
        server=server,
        concurrency=concurrency,
        requests_per_s=result.requests_per_s,
        p50_ms=result.latency_us["p50"] / 1000,
        p99_ms=result.latency_us["p99"] / 1000,
        cpu_us=used * 1e6 / result.requests,
        load=result,
    )


def _summary(measurements: list[Measurement], title: str) -> tuple[Table, list[Check]]:
    """Medians per (server, concurrency), their ratio to the limit, and the target."""
    groups: dict[tuple[str, int], list[Measurement]] = {}
    for run in measurements:
        groups.setdefault((run.server, run.concurrency), []).append(run)
    medians = {
        key: {
            name: statistics.median(getattr(one, name) for one in runs)
            for name in ("requests_per_s", "p50_ms", "p99_ms", "cpu_us")
        }
        for key, runs in groups.items()
    }
    rows = []
    for (server, concurrency), point in medians.items():
        limit = medians.get((LIMIT, concurrency))
        ratio = point["requests_per_s"] / limit["requests_per_s"] if limit else None
        rows.append(
            (
                server,
                concurrency,
                point["requests_per_s"],
                point["p50_ms"],
                point["p99_ms"],
                point["cpu_us"],
                ratio,
            )
        )
    columns = ("server", "in flight", "req/s", "p50 ms", "p99 ms", "CPU us/call", "x limit")
    checks = []
    top = max((concurrency for _, concurrency in medians), default=0)
    if (SUBJECT, top) in medians and (LIMIT, top) in medians:
        share = medians[(SUBJECT, top)]["requests_per_s"] / medians[(LIMIT, top)]["requests_per_s"]
        checks.append(
            check(
                f"gateway req/s vs bare grpc.aio servicer, {top} in flight",
                share,
                AT_LEAST_LIMIT_SHARE,
                at_least=True,
            )
        )
    return Table(title=title, columns=columns, rows=tuple(rows)), checks


def _progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)
