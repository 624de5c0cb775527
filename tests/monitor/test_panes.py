"""Panes shared through Redis: every process's panes in the window, and only the reader of
the longest window prunes the older ones."""

from __future__ import annotations

import pytest

from monitor.panes import RedisPanes
from tests.conftest import RedisServer

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def test_a_reader_of_a_shorter_window_leaves_the_longer_windows_panes(
    redis_server: RedisServer,
) -> None:
    worker = RedisPanes(redis_server.url, process="worker")
    rollout = RedisPanes(redis_server.url, process="leader")  # a rollout's last interval
    drift = RedisPanes(redis_server.url, process="evaluator")  # the drift window
    try:
        await worker.exchange("drift:m:1:output", {0.0: b"old", 100.0: b"new"}, since=0.0)
        recent = await rollout.exchange("drift:m:1:output", {}, since=50.0, prune=False)
        assert recent == [b"new"]
        assert sorted(await drift.exchange("drift:m:1:output", {}, since=0.0)) == [b"new", b"old"]
        # The drift evaluation itself prunes what has left its window.
        assert await drift.exchange("drift:m:1:output", {}, since=50.0) == [b"new"]
        assert await rollout.exchange("drift:m:1:output", {}, since=0.0, prune=False) == [b"new"]
    finally:
        for panes in (worker, rollout, drift):
            await panes.close()
