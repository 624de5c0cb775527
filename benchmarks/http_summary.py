"""The http scenario's arithmetic: medians per point, ratios in one run, and the targets.

Kept apart from the process juggling in `benchmarks.http` so that it is plain functions
over numbers. Ratios are only ever taken between figures of the same run: on a small,
shared machine absolute figures move 5-20% from one run to the next. The ratios that
decide are of CPU time per request (the server's process group, from /proc), which holds
on a shared machine where req/s does not.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Mapping, Sequence

import msgspec

from benchmarks.http_peers import LIMIT, MLSERVER
from benchmarks.report import Cell, Check, Table, check
from benchmarks.scenario import BenchmarkError
from benchmarks.wrk import WrkResult

PLAIN, BATCHED, TRACED = "gateway", "gateway-batched", "gateway-traced"
"""The gateway with default settings (what the targets judge), batching, and tracing at 1%."""

# Issue 15, "Targets": on the classifier with default settings, at the most connections.
AT_MOST_LIMIT_CPU = 2.5  # gateway CPU/request <= 2.5 x raw hello's
STRETCH_LIMIT_CPU = 2.0  # ... and the stretch goal, 2 x
AT_LEAST_PEER_CPU = 2.5  # the fastest peer's CPU/request >= 2.5 x the gateway's
AT_LEAST_MLSERVER_CPU = 6.0  # MLServer's CPU/request >= 6 x the gateway's
AT_MOST_P50_FACTOR = 2.0  # p50 at 1 connection <= 2 x (raw hello p50 + raw ORT time)
# Issue 6: batching against the same gateway unbatched.
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


Points = dict[tuple[str, int], Point]


def tables(
    measurements: Sequence[Measurement], ort_us: float, roles: Mapping[str, str], title: str
) -> list[Table]:
    """Every server at every connection count with its ratios, tracing's cost, the limits.

    `roles` maps each server to `limit`, `subject` (a gateway variant) or `peer`.
    """
    by_point = points(measurements)
    rows: list[tuple[Cell, ...]] = [
        (
            server,
            connections,
            p.requests_per_s,
            p.p50_ms,
            p.p99_ms,
            p.cpu_us,
            _cpu_ratio(by_point, (server, connections), (LIMIT, connections)),
            _cpu_ratio(by_point, (server, connections), (PLAIN, connections)),
            100 * p.spread,
            p.socket_errors,
        )
        for (server, connections), p in by_point.items()
    ]
    columns = (
        *("server", "conns", "req/s", "p50 ms", "p99 ms", "CPU us/req"),
        *(f"CPU x {LIMIT}", f"CPU x {PLAIN}", "spread %", "sock err"),
    )
    most = max((connections for _, connections in by_point), default=0)
    fastest = _fastest_peer(by_point, roles, most)
    raw_p50 = by_point[(LIMIT, 1)].p50_ms if (LIMIT, 1) in by_point else None
    budget = AT_MOST_P50_FACTOR * (raw_p50 + ort_us / 1000) if raw_p50 is not None else None
    return [
        Table(title=title, columns=columns, rows=tuple(rows)),
        *_tracing_cost(by_point),
        Table(
            title="limits and the peer",
            columns=("what", "value"),
            rows=(
                ("ONNX Runtime session.run, batch 1, in-process (us)", ort_us),
                (f"{LIMIT} p50 at 1 conn (ms)", raw_p50),
                (f"p50 budget at 1 conn: 2 x ({LIMIT} p50 + ORT) (ms)", budget),
                (f"the peer: the least CPU per request at {most} conns", fastest),
            ),
        ),
    ]


def checks(
    measurements: Sequence[Measurement], ort_us: float, roles: Mapping[str, str]
) -> list[Check]:
    """Issue 15's targets for the gateway with default settings, and batching's, where
    the run measured what they compare."""
    by_point = points(measurements)
    most = max(item.connections for item in measurements)
    result = []
    if (cost := _cpu_ratio(by_point, (PLAIN, most), (LIMIT, most))) is not None:
        name = f"{PLAIN} CPU/req / {LIMIT}'s at {most} conn"
        result += [
            check(name, cost, AT_MOST_LIMIT_CPU, at_least=False),
            check(f"{name} (stretch)", cost, STRETCH_LIMIT_CPU, at_least=False),
        ]
    fastest = _fastest_peer(by_point, roles, most)
    cheaper = None if fastest is None else _cpu_ratio(by_point, (fastest, most), (PLAIN, most))
    if cheaper is not None:
        result.append(
            check(
                f"fastest peer ({fastest}) CPU/req / {PLAIN}'s at {most} conn",
                cheaper,
                AT_LEAST_PEER_CPU,
                at_least=True,
            )
        )
    if (cheaper := _cpu_ratio(by_point, (MLSERVER, most), (PLAIN, most))) is not None:
        result.append(
            check(
                f"{MLSERVER} CPU/req / {PLAIN}'s at {most} conn",
                cheaper,
                AT_LEAST_MLSERVER_CPU,
                at_least=True,
            )
        )
    if (PLAIN, 1) in by_point and (LIMIT, 1) in by_point:
        budget = AT_MOST_P50_FACTOR * (by_point[(LIMIT, 1)].p50_ms + ort_us / 1000)
        result.append(
            check(
                f"{PLAIN} p50 ms at 1 conn (<= 2 x ({LIMIT} p50 + ORT))",
                by_point[(PLAIN, 1)].p50_ms,
                budget,
                at_least=False,
            )
        )
    result += _batching_checks(by_point, most)
    return result


def _fastest_peer(by_point: Points, roles: Mapping[str, str], connections: int) -> str | None:
    """The peer that spent the least CPU per request at `connections`: "the peer"."""
    measured = [
        (point.cpu_us, server)
        for (server, at), point in by_point.items()
        if at == connections and roles.get(server) == "peer"
    ]
    return min(measured)[1] if measured else None


def _batching_checks(by_point: Points, most: int) -> list[Check]:
    """Batching >= 1.3 x unbatched req/s under load, p50 within 10% of it when alone."""
    found = []
    if (gain := _ratio(by_point, (BATCHED, most), (PLAIN, most))) is not None:
        found.append(
            check(
                f"{BATCHED} req/s / {PLAIN} at {most} conn",
                gain,
                AT_LEAST_BATCHING_GAIN,
                at_least=True,
            )
        )
    if (BATCHED, 1) in by_point and (PLAIN, 1) in by_point:
        slower = by_point[(BATCHED, 1)].p50_ms / by_point[(PLAIN, 1)].p50_ms
        found.append(
            check(
                f"{BATCHED} p50 / {PLAIN} p50 at 1 conn",
                slower,
                AT_MOST_BATCHING_P50,
                at_least=False,
            )
        )
    return found


def _tracing_cost(by_point: Points) -> list[Table]:
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
    by_point: Points, numerator: tuple[str, int], denominator: tuple[str, int]
) -> float | None:
    if numerator not in by_point or denominator not in by_point:
        return None
    return by_point[numerator].requests_per_s / by_point[denominator].requests_per_s


def _cpu_ratio(
    by_point: Points, numerator: tuple[str, int], denominator: tuple[str, int]
) -> float | None:
    """CPU per request of one point over another's; None unless both ran and used some."""
    if numerator not in by_point or denominator not in by_point:
        return None
    below = by_point[denominator].cpu_us
    return by_point[numerator].cpu_us / below if below > 0 else None
