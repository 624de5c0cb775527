"""The http scenario's arithmetic: medians per point, ratios in one run, and issue 6's targets.

Kept apart from the process juggling in `benchmarks.http` so that it is plain functions
over numbers. Ratios are only ever taken between figures of the same run: on a small,
shared machine absolute figures move 5-20% from one run to the next.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Sequence

import msgspec

from benchmarks.report import Cell, Check, Table, check
from benchmarks.scenario import BenchmarkError
from benchmarks.wrk import WrkResult

LIMIT, PEER = "raw-hello", "fastapi"
"""The names of the server that is the limit, and of the peer."""
PLAIN, TRACED = "gateway", "gateway-traced"
"""The gateway variants whose ratio is the cost of tracing (1% sampled)."""

# Issue 6, "Targets": ratios in one run, medians of 3.
AT_LEAST_LIMIT_SHARE = 0.5  # gateway req/s >= 0.5 x raw hello, at 64 connections
AT_LEAST_PEER_FACTOR = 2.5  # gateway req/s >= 2.5 x the FastAPI peer, at 64 connections
AT_MOST_P50_FACTOR = 2.0  # p50 at 1 connection <= 2 x (raw hello p50 + raw ORT time)
AT_LEAST_BATCHING_GAIN = 1.3  # batched req/s >= 1.3 x unbatched, at 64 connections
AT_MOST_BATCHING_P50 = 1.1  # batched p50 within 10% of unbatched, at 1 connection


class Measurement(msgspec.Struct, frozen=True, kw_only=True):
    """One wrk run against one server."""

    server: str
    connections: int
    requests_per_s: float
    p50_ms: float
    p99_ms: float
    cpu_us: float
    """CPU time the server's processes used per request (user + system, from /proc)."""
    wrk: WrkResult


def measurement(
    server: str, connections: int, result: WrkResult, *, cpu_seconds: float
) -> Measurement:
    """A run's figures; a run that got error responses is refused, not reported."""
    if result.status_errors:
        raise BenchmarkError(
            f"{server} answered {result.status_errors} of {result.requests} requests with "
            f"an error status at {connections} connections: that would measure error pages"
        )
    if not result.requests:
        raise BenchmarkError(f"{server} completed no request at {connections} connections")
    return Measurement(
        server=server,
        connections=connections,
        requests_per_s=result.requests_per_s,
        p50_ms=result.latency_us.p50 / 1000,
        p99_ms=result.latency_us.p99 / 1000,
        cpu_us=cpu_seconds * 1e6 / result.requests,
        wrk=result,
    )


class Point(msgspec.Struct, frozen=True, kw_only=True):
    """The median of a server's runs at one connection count."""

    requests_per_s: float
    p50_ms: float
    p99_ms: float
    cpu_us: float
    spread: float
    """(max - min) / median of the runs' req/s: how much to trust the median."""
    socket_errors: int


def points(measurements: Iterable[Measurement]) -> dict[tuple[str, int], Point]:
    """Medians by (server, connections), in the order the servers ran."""
    groups: dict[tuple[str, int], list[Measurement]] = {}
    for item in measurements:
        groups.setdefault((item.server, item.connections), []).append(item)
    result = {}
    for key, runs in groups.items():
        rates = [run.requests_per_s for run in runs]
        median = statistics.median(rates)
        result[key] = Point(
            requests_per_s=median,
            p50_ms=statistics.median(run.p50_ms for run in runs),
            p99_ms=statistics.median(run.p99_ms for run in runs),
            cpu_us=statistics.median(run.cpu_us for run in runs),
            spread=(max(rates) - min(rates)) / median,
            socket_errors=sum(run.wrk.socket_errors for run in runs),
        )
    return result


def tables(
    measurements: Sequence[Measurement], ort_us: float, subjects: Sequence[str], title: str
) -> list[Table]:
    """The per-server table, the ratios of each subject, and the limits."""
    by_point = points(measurements)
    rows: list[tuple[Cell, ...]] = [
        (
            server,
            connections,
            p.requests_per_s,
            p.p50_ms,
            p.p99_ms,
            p.cpu_us,
            100 * p.spread,
            p.socket_errors,
        )
        for (server, connections), p in by_point.items()
    ]
    ratios: list[tuple[Cell, ...]] = [
        (
            server,
            connections,
            _ratio(by_point, (server, connections), (LIMIT, connections)),
            _ratio(by_point, (server, connections), (PEER, connections)),
        )
        for server, connections in by_point
        if server in subjects
    ]
    raw_p50 = by_point[(LIMIT, 1)].p50_ms if (LIMIT, 1) in by_point else None
    budget = AT_MOST_P50_FACTOR * (raw_p50 + ort_us / 1000) if raw_p50 is not None else None
    return [
        Table(
            title=title,
            columns=(
                "server",
                "conns",
                "req/s",
                "p50 ms",
                "p99 ms",
                "CPU us/req",
                "spread %",
                "sock err",
            ),
            rows=tuple(rows),
        ),
        *_tracing_cost(by_point),
        Table(
            title="req/s ratios (same run)",
            columns=("server", "conns", f"x {LIMIT}", f"x {PEER}"),
            rows=tuple(ratios),
        ),
        Table(
            title="limits",
            columns=("what", "value"),
            rows=(
                ("ONNX Runtime session.run, batch 1, in-process (us)", ort_us),
                (f"{LIMIT} p50 at 1 conn (ms)", raw_p50),
                (f"p50 budget at 1 conn: 2 x ({LIMIT} p50 + ORT) (ms)", budget),
            ),
        ),
    ]


def checks(
    measurements: Sequence[Measurement], ort_us: float, subjects: Sequence[str]
) -> list[Check]:
    """Issue 6's targets for every subject, where the run measured what they compare."""
    by_point = points(measurements)
    most = max(item.connections for item in measurements)
    result = []
    for server in subjects:
        if (share := _ratio(by_point, (server, most), (LIMIT, most))) is not None:
            result.append(
                check(
                    f"{server} req/s / {LIMIT} at {most} conn",
                    share,
                    AT_LEAST_LIMIT_SHARE,
                    at_least=True,
                )
            )
        if (factor := _ratio(by_point, (server, most), (PEER, most))) is not None:
            result.append(
                check(
                    f"{server} req/s / {PEER} at {most} conn",
                    factor,
                    AT_LEAST_PEER_FACTOR,
                    at_least=True,
                )
            )
        if (server, 1) in by_point and (LIMIT, 1) in by_point:
            budget = AT_MOST_P50_FACTOR * (by_point[(LIMIT, 1)].p50_ms + ort_us / 1000)
            result.append(
                check(
                    f"{server} p50 ms at 1 conn",
                    by_point[(server, 1)].p50_ms,
                    budget,
                    at_least=False,
                )
            )
    result += _batching_checks(by_point, most)
    return result


def _batching_checks(by_point: dict[tuple[str, int], Point], most: int) -> list[Check]:
    """Batching >= 1.3 x unbatched req/s under load, p50 within 10% of it when alone."""
    plain, batched = "gateway", "gateway-batched"
    found = []
    if (gain := _ratio(by_point, (batched, most), (plain, most))) is not None:
        found.append(
            check(
                f"{batched} req/s / {plain} at {most} conn",
                gain,
                AT_LEAST_BATCHING_GAIN,
                at_least=True,
            )
        )
    if (batched, 1) in by_point and (plain, 1) in by_point:
        slower = by_point[(batched, 1)].p50_ms / by_point[(plain, 1)].p50_ms
        found.append(
            check(
                f"{batched} p50 / {plain} p50 at 1 conn",
                slower,
                AT_MOST_BATCHING_P50,
                at_least=False,
            )
        )
    return found


def _tracing_cost(by_point: dict[tuple[str, int], Point]) -> list[Table]:
    """The traced gateway against the plain one, per connection count, when both ran."""
    rows: list[tuple[Cell, ...]] = [
        (
            connections,
            by_point[(TRACED, connections)].requests_per_s / point.requests_per_s,
            by_point[(TRACED, connections)].cpu_us / point.cpu_us,
        )
        for (server, connections), point in by_point.items()
        if server == PLAIN and (TRACED, connections) in by_point
    ]
    if not rows:
        return []
    columns = ("conns", f"req/s {TRACED} / {PLAIN}", f"CPU us/req {TRACED} / {PLAIN}")
    return [Table(title="tracing at 1% (same run)", columns=columns, rows=tuple(rows))]


def _ratio(
    by_point: dict[tuple[str, int], Point], numerator: tuple[str, int], denominator: tuple[str, int]
) -> float | None:
    if numerator not in by_point or denominator not in by_point:
        return None
    return by_point[numerator].requests_per_s / by_point[denominator].requests_per_s
