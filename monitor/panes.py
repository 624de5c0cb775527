"""Sharing time panes between workers and replicas, so statistics cover all traffic.

Counts over fixed bin edges add exactly, so merging is a sum. Each process publishes its
own panes under its own name; whoever evaluates adds up every process's panes in the window.
`LocalPanes` is the embedded default (one process: its panes are all there is);
`RedisPanes` shares them through one Redis hash per model version and direction.
"""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Mapping
from typing import Protocol

import numpy as np
import redis.asyncio as aioredis
from redis.exceptions import RedisError

from monitor.layout import WindowCounts, WindowLayout


class PaneStore(Protocol):
    """Where panes meet: publish this process's, read everyone's. A pane is opaque bytes
    (see `encode_counts`), named by what it counts (`key`) and when it starts."""

    async def exchange(
        self, key: str, own: Mapping[float, bytes], since: float, *, prune: bool = True
    ) -> list[bytes]:
        """Publish `own` panes; return every process's panes that start at or after `since`.

        `prune` removes the panes older than `since` from the store: only the reader whose
        window is the key's longest may (the drift evaluation for its own key); a reader of
        a shorter window (a rollout's last interval) would take panes from under it.
        """
        ...

    async def close(self) -> None:
        """Release connections."""
        ...


class LocalPanes:
    """One process: the merged panes are this process's own."""

    async def exchange(
        self, key: str, own: Mapping[float, bytes], since: float, *, prune: bool = True
    ) -> list[bytes]:
        """This process's panes in the window (each process prunes its own as it goes)."""
        del key, prune
        return [pane for start, pane in own.items() if start >= since]

    async def close(self) -> None:
        """Nothing to release."""


class RedisPanes:
    """Panes of every process in a Redis hash `{prefix}panes:{model}:{version}:{direction}`
    whose fields are `{pane start}:{process}`; fields older than the window are deleted."""

    def __init__(
        self,
        url: str,
        *,
        prefix: str = "driftgate:",
        ttl_seconds: float = 3600,
        process: str | None = None,
    ) -> None:
        self._redis: aioredis.Redis = aioredis.Redis.from_url(
            url, socket_timeout=1.0, socket_connect_timeout=1.0
        )
        self._prefix = prefix
        self._ttl = int(ttl_seconds)
        self._process = process or f"{socket.gethostname()}-{os.getpid()}"  # its panes' name

    async def exchange(
        self, key: str, own: Mapping[float, bytes], since: float, *, prune: bool = True
    ) -> list[bytes]:
        """Publish and read through Redis; unreachable Redis falls back to the local panes."""
        name = f"{self._prefix}panes:{key}"
        fields = {
            f"{start:.0f}:{self._process}": pane for start, pane in own.items() if start >= since
        }
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                if fields:
                    pipe.hset(name, mapping=fields)  # type: ignore[arg-type]
                pipe.expire(name, self._ttl)
                pipe.hgetall(name)
                *_, stored = await pipe.execute()
        except (RedisError, OSError):
            return await LocalPanes().exchange(key, own, since, prune=prune)
        merged, stale = [], []
        for field, value in stored.items():
            start = float(field.split(b":", 1)[0])
            if start >= since:
                merged.append(value)
            else:
                stale.append(field)
        if stale and prune:  # on failure: removed by the next exchange, or by the key's expiry
            with contextlib.suppress(RedisError, OSError):
                await self._redis.hdel(name, *stale)
        return merged

    async def close(self) -> None:
        """Release the connection pool."""
        await self._redis.aclose()


class RowClock:
    """Rows a version's stream has produced, each counted once, from successive pane views.

    Each evaluation sees the merged panes of its window; a pane may have grown since the
    last look (the current one fills up; another process published late). Counting only
    each pane's growth gives a count that never goes back and never counts a row twice.
    """

    def __init__(self) -> None:
        self.rows = 0
        self._panes: dict[float, int] = {}

    def advance(self, panes: Mapping[float, int]) -> int:
        """Take the rows per pane start now; returns the rows seen so far."""
        for start, rows in panes.items():
            self.rows += max(0, rows - self._panes.get(start, 0))
        self._panes = dict(panes)
        return self.rows


def encode_counts(start: float, counts: WindowCounts) -> bytes:
    """A drift pane as bytes: its start, its counts, then its sums, little-endian.

    The start travels with the counts so that the evaluator can tell which rows are new
    since its last look (the persistence of drift counts fresh rows).
    """
    head = np.array([start], dtype="<f8").tobytes()
    return head + counts.counts.astype("<i8").tobytes() + counts.sums.astype("<f8").tobytes()


def decode_counts(data: bytes, layout: WindowLayout) -> tuple[float, WindowCounts]:
    """The pane start and drift counts `encode_counts` made, in `layout`'s shape."""
    empty = layout.empty()
    split = 8 + empty.counts.size * 8
    start = float(np.frombuffer(data[:8], dtype="<f8")[0])
    counts = np.frombuffer(data[8:split], dtype="<i8").reshape(empty.counts.shape)
    sums = np.frombuffer(data[split:], dtype="<f8").reshape(empty.sums.shape)
    return start, WindowCounts(counts.astype(np.int64), sums.astype(np.float64))
