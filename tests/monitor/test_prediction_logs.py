"""One contract suite for the prediction logs and retraining episodes, run in this process
and on a real Redis (where the two sides are two replicas sharing it)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import numpy as np
import pytest
import redis.asyncio as aioredis

from monitor.episodes import EpisodeStore, LocalEpisodes, RedisEpisodes
from monitor.feedback import (
    FeedbackItem,
    FeedbackResult,
    LocalPredictionLog,
    PredictionLog,
    PredictionLogUnavailableError,
)
from monitor.feedback_redis import RedisPredictionLog
from monitor.traffic import TrafficPanes, outcomes
from registry import Manifest, ModelRegistry
from tests.conftest import RedisServer
from tests.proxy import ReplyDropper

pytestmark = pytest.mark.anyio
Pair = tuple[PredictionLog, PredictionLog, TrafficPanes]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def manifest(tmp_path: Path, artifacts: Path) -> Manifest:
    """affine v1: a regressor, `y = x + 1`, its label compared with y's first column."""
    registry = ModelRegistry(tmp_path / "models")
    registry.register(
        "affine", artifacts / "affine.onnx", artifacts / "affine.parquet", target="label"
    )
    return registry.manifest("affine", 1)


@pytest.fixture(params=["local", "redis"])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def log_factory(
    backend: str, request: pytest.FixtureRequest
) -> Callable[[TrafficPanes, int], PredictionLog]:
    if backend == "local":
        return lambda traffic, capacity: LocalPredictionLog(traffic, capacity=capacity)
    server: RedisServer = request.getfixturevalue("redis_server")
    return lambda traffic, capacity: RedisPredictionLog(server.url, traffic, capacity=capacity)


@pytest.fixture
def capacity() -> int:
    return 100


@pytest.fixture
async def pair(backend: str, capacity: int, request: pytest.FixtureRequest) -> AsyncIterator[Pair]:
    """The log that remembers and the one that receives labels (one and the same in a
    single process; two replicas on Redis), and the receiver's traffic panes."""
    make = log_factory(backend, request)
    traffic = TrafficPanes(pane_seconds=60.0, max_panes=5)
    if backend == "local":
        server = receiver = make(traffic, capacity)
        logs = [server]
    else:
        server = make(TrafficPanes(pane_seconds=60.0, max_panes=5), capacity)
        receiver = make(traffic, capacity)
        logs = [server, receiver]
    for log in logs:
        await log.start()
    yield server, receiver, traffic
    for log in logs:
        await log.close()


def outputs(*values: float) -> dict[str, np.ndarray]:
    """affine's outputs for rows whose y starts with `values`."""
    y = np.zeros((len(values), 4), np.float32)
    y[:, 0] = values
    return {"y": y, "total": y.sum(axis=1)}


async def join_until_known(log: PredictionLog, items: list[FeedbackItem]) -> FeedbackResult:
    """Join, again for ids still unknown while the server's writes may be on their way."""
    for _ in range(100):
        result = await log.join(items)
        if not result.unknown:
            return result
        await asyncio.sleep(0.02)
    return result


async def test_a_label_joins_once_wherever_it_arrives(manifest: Manifest, pair: Pair) -> None:
    server, receiver, traffic = pair
    server.remember("r1", manifest, outputs(3.0))
    server.remember("r2", manifest, outputs(1.0, 2.0))
    items = [FeedbackItem("r1", 1.0), FeedbackItem("r2", [1.0, 4.0])]
    assert await join_until_known(receiver, items) == FeedbackResult(2, [], [], [])
    window = outcomes(traffic.own("affine", 1).values())
    assert (window.labelled, window.abs_error) == (3, 2.0 + 0.0 + 2.0)
    # Joined once: the same label again is a retry, accepted and not counted again; another
    # label is unknown, as one for an id never seen.
    again = await server.join(
        [FeedbackItem("r1", 1.0), FeedbackItem("r2", [9.0, 9.0]), FeedbackItem("never", 1.0)]
    )
    assert again == FeedbackResult(1, ["r2", "never"], [], [])
    assert outcomes(traffic.own("affine", 1).values()).labelled == 3
    # Both sides find the labels for an export, whichever joined them (written in the
    # background on Redis, as predictions are).
    for log in (server, receiver):
        for _ in range(100):
            if len(labels := await log.labels(["r1", "r2", "never"])) == 2:
                break
            await asyncio.sleep(0.02)
        assert labels == {"r1": [1.0], "r2": [1.0, 4.0]}


async def test_a_label_that_does_not_fit_counts_nothing(manifest: Manifest, pair: Pair) -> None:
    server, receiver, traffic = pair
    server.remember("r1", manifest, outputs(1.0, 2.0))
    server.remember("r2", manifest, outputs(1.0, 2.0))
    items = [FeedbackItem("r1", [1.0]), FeedbackItem("r2", [1.0, "two"])]
    assert await join_until_known(receiver, items) == FeedbackResult(0, [], [], ["r1", "r2"])
    assert outcomes(traffic.own("affine", 1).values()).labelled == 0


@pytest.mark.parametrize("capacity", [3])
async def test_past_its_capacity_the_oldest_are_expired(manifest: Manifest, pair: Pair) -> None:
    server, receiver, _ = pair
    for index in range(5):
        server.remember(f"r{index}", manifest, outputs(float(index)))
        await asyncio.sleep(0.01)  # distinct times: the oldest is well defined
    items = [FeedbackItem(f"r{index}", float(index)) for index in range(5)]
    result = await join_until_known(receiver, items)
    assert (result.accepted, result.expired) == (3, ["r0", "r1"])


@pytest.fixture
def episodes(backend: str, request: pytest.FixtureRequest) -> Callable[[], EpisodeStore]:
    if backend == "local":
        store = LocalEpisodes()
        return lambda: store  # one process: one store
    server: RedisServer = request.getfixturevalue("redis_server")
    return lambda: RedisEpisodes(server.url)


async def test_an_episode_is_claimed_once_until_it_runs_out(
    episodes: Callable[[], EpisodeStore],
) -> None:
    leader, successor = episodes(), episodes()
    claims = await asyncio.gather(*(store.claim("m", 1, 0.3) for store in (leader, successor)))
    assert sorted(claims) == [False, True]
    assert await successor.claim("m", 2, 0.3)  # another version: its own episode
    for _ in range(3):  # renewed while it drifts: it outlives its first lifetime
        await asyncio.sleep(0.15)
        await successor.renew("m", 1, 0.3)
    assert not await successor.claim("m", 1, 0.3)
    await asyncio.sleep(0.4)  # no renewal: the episode ends, the next drift fires again
    assert await leader.claim("m", 1, 0.3)
    await leader.renew("m", 3, 0.3)  # renewing none begins none
    assert await leader.claim("m", 3, 0.3)
    for store in {id(leader): leader, id(successor): successor}.values():
        await store.close()


async def test_a_label_whose_reply_was_lost_is_accepted_again_and_scored_once(
    manifest: Manifest, redis_server: RedisServer
) -> None:
    """The taker's script ran but its reply never came back: it answered 'unavailable', and
    the label sent again (to another replica) is accepted, scored once, by a take-over."""
    proxy = ReplyDropper(redis_server.port)
    await proxy.start()
    server_traffic, cut_traffic, other_traffic = (
        TrafficPanes(pane_seconds=60.0, max_panes=5) for _ in range(3)
    )
    server = RedisPredictionLog(redis_server.url, server_traffic)
    cut = RedisPredictionLog(f"redis://127.0.0.1:{proxy.port}/0", cut_traffic)
    other = RedisPredictionLog(redis_server.url, other_traffic, claim_seconds=0.5)
    for log in (server, cut, other):
        await log.start()
    try:
        server.remember("r1", manifest, outputs(3.0))
        for _ in range(100):
            if await redis_server_has(redis_server, "r1"):
                break
            await asyncio.sleep(0.02)
        proxy.drop = True
        with pytest.raises(PredictionLogUnavailableError):
            await cut.join([FeedbackItem("r1", 1.0)])
        proxy.drop = False

        again = await other.join([FeedbackItem("r1", 1.0)])
        assert again == FeedbackResult(1, [], [], [])  # accepted, to be scored by a take-over
        await asyncio.sleep(0.6)
        await other.take_over_claims()  # unless its writer, which looks too, took it first
        window = outcomes(other_traffic.own("affine", 1).values())
        assert (window.labelled, window.abs_error) == (1, 2.0)
        await asyncio.sleep(0.6)
        assert await other.take_over_claims() == 0  # settled: taken over once
        assert outcomes(cut_traffic.own("affine", 1).values()).labelled == 0
        assert await other.join([FeedbackItem("r1", 2.0)]) == FeedbackResult(0, ["r1"], [], [])
        assert await other.join([FeedbackItem("r1", 1.0)]) == FeedbackResult(1, [], [], [])
        assert outcomes(other_traffic.own("affine", 1).values()).labelled == 1
        assert await server.labels(["r1"]) in ({"r1": [1.0]}, {})
    finally:
        for log in (server, cut, other):
            await log.close()
        await proxy.close()


async def redis_server_has(redis_server: RedisServer, request_id: str) -> bool:
    client = aioredis.Redis.from_url(redis_server.url)
    try:
        return bool(await client.hexists("driftgate:predictions", request_id))
    finally:
        await client.aclose()
