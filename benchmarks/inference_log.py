"""Inference log: what it costs an infer call, off and on, against the call without it.

In one process pinned to one CPU, the gateway's ASGI app (the fast infer path, the data
plane, the model) answers the benchmark's request (model `tiny`, one row of 20 floats)
with no socket in between, so the log's cost is not lost in HTTP's. Variants, measured in
interleaved rounds on one event loop:

- off: the default, no log (the limit: off, the log is one `is not None` branch);
- on: every call logged (rate 1) to a Parquet sink, whose writer runs on the same loop;
- on-half: rate 0.5 (the sampling draw is a hash of the routing key);
- peer: off, plus the call's CloudEvent encoded on the request path (what a logger that
  formats in the request does), which the log's queue keeps off it.

Per call: the median of each call's own time (the request path) and the wall time of all
calls over their count (with the writer's work, which shares the CPU). Medians of separate
apps differ by their own noise too (tens of microseconds on a shared machine), so the log's
request-path pieces are also timed alone (timeit, loop subtracted): the branch when off,
`offer` at rates 1 and 0.5. The checks are on those.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import os
import random
import statistics
import tempfile
import time
import timeit
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.models import build_artifacts, infer_body, register_all, request_row
from benchmarks.report import Report, Table, check, machine_info
from benchmarks.scenario import BenchmarkError

PACKAGES = ("driftgate", "litestar", "msgspec", "numpy", "polars", "opentelemetry-api")
MODEL = "tiny"
OFFER_US_AT_MOST = 10.0
"""What logging a call may add to its request path (`offer`, microseconds)."""
BRANCH_NS_AT_MOST = 50.0
"""What the log may cost a call while off (the branch)."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of the inference-log scenario."""
    parser.add_argument("--calls", type=int, default=2000, help="calls per variant per round")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds")
    parser.add_argument("--cpu", type=int, default=0, help="CPU to pin to (default 0)")


def run(args: argparse.Namespace) -> Report:
    """Measure every variant; see the module docstring."""
    os.sched_setaffinity(0, {args.cpu})
    machine = machine_info(PACKAGES)
    with tempfile.TemporaryDirectory(prefix="driftgate-bench-log-") as temp:
        root = Path(temp)
        artifacts = build_artifacts(root / "artifacts", ["mlp", "tiny"])
        body = infer_body(request_row())
        calls = asyncio.run(_calls(root, artifacts, body, args.calls, args.rounds))
        pieces = _pieces(root)
    per_call = {name: statistics.median(times) * 1e6 for name, (times, _) in calls.items()}
    wall = {name: total * 1e6 / (args.calls * args.rounds) for name, (_, total) in calls.items()}
    rows = tuple(
        (name, per_call[name], per_call[name] - per_call["off"], wall[name]) for name in calls
    )
    return Report(
        scenario="inference-log",
        machine=machine,
        options={"model": MODEL, "calls": args.calls, "rounds": args.rounds, "cpu": args.cpu},
        tables=[
            Table(
                title=f"infer via the ASGI app, {MODEL}, {args.rounds} x {args.calls} calls",
                columns=("variant", "median us", "added us", "wall us/call"),
                rows=rows,
            ),
            Table(
                title="the log's request-path pieces alone (ns per call)",
                columns=("piece", "ns"),
                rows=tuple(pieces.items()),
            ),
        ],
        checks=[
            check(
                "request path of a logged call: offer (us)",
                pieces["on, rate 1: offer"] / 1000,
                OFFER_US_AT_MOST,
                at_least=False,
            ),
            check(
                "cost while off (ns)", pieces["off: the branch"], BRANCH_NS_AT_MOST, at_least=False
            ),
            check("peer over on (us)", per_call["peer"] - per_call["on"], 0.0, at_least=True),
        ],
        runs=[{"variant": name, "times_s": times} for name, (times, _) in calls.items()],
    )


async def _calls(
    root: Path, artifacts: dict[str, Path], body: bytes, count: int, rounds: int
) -> dict[str, tuple[list[float], float]]:
    """Each variant's per-call times and total wall time, over interleaved rounds."""
    from opentelemetry.trace import INVALID_SPAN_CONTEXT

    from gateway.app import create_app
    from gateway.settings import Settings
    from monitor.inference_log import Inference, Privacy, encode_event
    from registry import ModelRegistry

    settings: dict[str, dict[str, Any]] = {
        "off": {},
        "on": {"inference_log_rate": 1.0},
        "on-half": {"inference_log_rate": 0.5},
    }
    apps = {}
    for name, extra in settings.items():
        register_all(root / name, artifacts)
        apps[name] = create_app(Settings(home=root / name, inference_log_parquet=True, **extra))
    apps["peer"] = apps["off"]
    manifest = ModelRegistry(root / "off" / "models").manifest(MODEL)
    arrays = {"x": np.asarray([request_row()], dtype=np.float32)}
    outputs = {"y": arrays["x"][:, :1]}
    privacy = Privacy()
    encoded: list[bytes] = []

    def inline_log() -> None:  # the peer: the record built and encoded in the request
        record = Inference(
            manifest, "stable", None, None, arrays, outputs, 0.0, time.time(), INVALID_SPAN_CONTEXT
        )
        encoded.append(encode_event(record, privacy))

    scope: Any = {
        "type": "http",
        "path": f"/v2/models/{MODEL}/infer",
        "method": "POST",
        "headers": [(b"content-length", str(len(body)).encode())],
    }
    request = {"type": "http.request", "body": body, "more_body": False}
    statuses: set[int] = set()

    async def receive() -> Any:
        return request

    async def send(event: Any) -> None:
        if event["type"] == "http.response.start":
            statuses.add(event["status"])

    results: dict[str, tuple[list[float], float]] = {name: ([], 0.0) for name in apps}
    shuffle = random.Random(0).shuffle
    async with contextlib.AsyncExitStack() as stack:
        for name in settings:
            await stack.enter_async_context(_lifespan(apps[name]))
        for app in apps.values():  # warm-up: first-call allocations, caches
            for _ in range(200):
                await app(scope, receive, send)
                await asyncio.sleep(0)
        for _ in range(rounds):
            order = list(apps)
            shuffle(order)  # no variant always follows another's background work
            for name in order:
                app = apps[name]
                times, total = results[name]
                started = time.perf_counter()
                for _ in range(count):
                    call = time.perf_counter()
                    await app(scope, receive, send)
                    if name == "peer":
                        inline_log()
                    times.append(time.perf_counter() - call)
                    await asyncio.sleep(0)  # as a server does between calls: the writers run
                results[name] = (times, total + time.perf_counter() - started)
    if statuses != {200}:
        raise BenchmarkError(f"the gateway answered {sorted(statuses)}, not only 200")
    return results


@contextlib.asynccontextmanager
async def _lifespan(app: Any) -> AsyncIterator[None]:
    """An ASGI app started and, on leaving, stopped, as a server does (lifespan events)."""
    inbox: asyncio.Queue[dict[str, str]] = asyncio.Queue()
    outbox: asyncio.Queue[dict[str, str]] = asyncio.Queue()
    task = asyncio.create_task(app({"type": "lifespan"}, inbox.get, outbox.put))
    await inbox.put({"type": "lifespan.startup"})
    if (answer := await outbox.get())["type"] != "lifespan.startup.complete":
        raise BenchmarkError(f"the gateway did not start: {answer}")
    try:
        yield
    finally:
        await inbox.put({"type": "lifespan.shutdown"})
        await outbox.get()
        await task


def _pieces(root: Path, number: int = 200_000) -> dict[str, float]:
    """Nanoseconds per call of the log's request-path code alone (timeit, loop subtracted)."""
    from prometheus_client import CollectorRegistry

    from monitor.inference_log import InferenceLog, LogConfig, ParquetSink, Privacy
    from monitor.metrics import GatewayMetrics
    from monitor.sampling import is_sampled
    from registry import ModelRegistry

    manifest = ModelRegistry(root / "off" / "models").manifest(MODEL)
    arrays = {"x": np.asarray([request_row()], dtype=np.float32)}

    def log(rate: float) -> InferenceLog:  # never started: offer only enqueues
        sink = ParquetSink(root / "pieces", roll_seconds=60, roll_bytes=1 << 30, privacy=Privacy())
        config = LogConfig(rate=rate, queue_size=number + 1, batch_size=number + 1)
        return InferenceLog(config, [sink], GatewayMetrics(CollectorRegistry()))

    names = {
        "log": None,
        "manifest": manifest,
        "arrays": arrays,
        "keys": itertools.cycle([f"request-{index}" for index in range(1000)]),
        "is_sampled": is_sampled,
    }
    offer = (
        "log.offer(manifest, role='stable', request_id='r', routing_key=next(keys), "
        "inputs=arrays, outputs=arrays, latency=0.0)"
    )

    def ns(statement: str, baseline: str = "pass", **more: Any) -> float:
        space = {**names, **more}
        spent = timeit.timeit(statement, globals=space, number=number)
        empty = timeit.timeit(baseline, globals=space, number=number)
        return max(0.0, (spent - empty) / number * 1e9)

    return {
        "off: the branch": ns("if log is not None: pass"),
        "on, rate 1: offer": ns(offer, "next(keys)", log=log(1.0)),
        "on, rate 0.5: offer (half enqueue)": ns(offer, "next(keys)", log=log(0.5)),
        "the drift monitor's draw, for scale": ns(
            "is_sampled(0.1, 'tiny', next(keys))", "next(keys)"
        ),
    }
