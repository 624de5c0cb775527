"""A gRPC load generator: one grpc.aio process sending one unary call over and over.

ghz, the usual gRPC load tool, is not packaged in Debian, npm or PyPI, so the `grpc`
scenario runs this instead, pinned to its own CPU as wrk is for `http`. It sends bytes
already serialized and reads the answer as bytes (no serializers: protobuf work stays out
of its loop), from `concurrency` coroutines over `channels` channels (each its own TCP
connection), each with one call in flight. Run it as
`python -m benchmarks.grpc_load TARGET METHOD REQUEST_FILE --concurrency N --duration S`;
it prints one JSON line (`GrpcLoadResult`).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

import msgspec


class GrpcLoadResult(msgspec.Struct, frozen=True, kw_only=True):
    """One run: calls that succeeded, those that failed, and latency in microseconds."""

    requests: int
    errors: int
    """Calls answered with a status other than OK (or not answered)."""
    first_error: str
    duration_us: int
    latency_us: dict[str, float]
    """mean, p50, p90, p99 and max of the successful calls."""

    @property
    def requests_per_s(self) -> float:
        """Successful calls per second of the run."""
        return self.requests / (self.duration_us / 1e6) if self.duration_us else 0.0


async def load(
    target: str,
    method: str,
    request: bytes,
    *,
    concurrency: int,
    channels: int,
    duration_s: float,
    tls_root: bytes | None = None,
) -> GrpcLoadResult:
    """Call `method` on `target` with `request` from `concurrency` callers for `duration_s`."""
    import grpc
    import numpy as np

    # A local subchannel pool per channel: without it gRPC shares one connection among
    # channels to the same target.
    options = [("grpc.use_local_subchannel_pool", 1)]
    opened = [
        grpc.aio.secure_channel(target, grpc.ssl_channel_credentials(tls_root), options)
        if tls_root is not None
        else grpc.aio.insecure_channel(target, options)
        for _ in range(channels)
    ]
    calls: list[grpc.aio.UnaryUnaryMultiCallable[bytes, bytes]] = [
        channel.unary_unary(method) for channel in opened
    ]
    latencies: list[list[float]] = [[] for _ in range(concurrency)]
    errors: list[str] = []
    deadline = time.perf_counter() + duration_s

    async def caller(index: int) -> None:
        call, times = calls[index % len(calls)], latencies[index]
        while (started := time.perf_counter()) < deadline:
            try:
                await call(request, timeout=10)
            except grpc.aio.AioRpcError as exc:
                errors.append(f"{exc.code().name}: {exc.details()}")
                continue
            times.append(time.perf_counter() - started)

    begun = time.perf_counter()
    await asyncio.gather(*(caller(index) for index in range(concurrency)))
    elapsed = time.perf_counter() - begun
    for channel in opened:
        await channel.close()
    samples = np.array([value for times in latencies for value in times]) * 1e6
    stats = {"mean": 0.0, "p50": 0.0, "p90": 0.0, "p99": 0.0, "max": 0.0}
    if samples.size:
        p50, p90, p99 = np.percentile(samples, [50, 90, 99])
        stats = {
            "mean": float(samples.mean()),
            "p50": float(p50),
            "p90": float(p90),
            "p99": float(p99),
            "max": float(samples.max()),
        }
    return GrpcLoadResult(
        requests=int(samples.size),
        errors=len(errors),
        first_error=errors[0] if errors else "",
        duration_us=int(elapsed * 1e6),
        latency_us=stats,
    )


def main() -> None:
    """Parse the command line, run once, print the result as one JSON line."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.grpc_load")
    parser.add_argument("target", help="host:port")
    parser.add_argument("method", help="e.g. /inference.GRPCInferenceService/ModelInfer")
    parser.add_argument("request", type=Path, help="file holding the serialized request")
    parser.add_argument("--concurrency", type=int, default=1)
    parser.add_argument("--channels", type=int, default=1)
    parser.add_argument("--duration", type=float, default=5.0)
    args = parser.parse_args()
    import uvloop

    result = uvloop.run(
        load(
            args.target,
            args.method,
            args.request.read_bytes(),
            concurrency=args.concurrency,
            channels=min(args.channels, args.concurrency),
            duration_s=args.duration,
        )
    )
    sys.stdout.write(msgspec.json.encode(result).decode() + "\n")


if __name__ == "__main__":
    main()
