"""The prediction log in Redis: a label joins wherever it arrives, whoever served the call.

    {prefix}predictions            hash: request id -> Remembered JSON ("" once joined)
    {prefix}predictions:index      sorted set: request id by the time it was served
    {prefix}predictions:forgotten  sorted set: ids trimmed lately (a late label: "expired")
    {prefix}labels                 hash: request id -> joined labels JSON (for exports)
    {prefix}labels:index           sorted set: request id by the time it was joined

Bounded twice: every write trims entries older than `max_age_seconds` and the oldest past
`capacity`, and every key expires twice `max_age_seconds` after the last write (once for
the entries, once more for the ids that tell a late label "expired"), so an idle cluster
leaves nothing behind. A label takes its prediction in one script (it joins once, even if
sent to two replicas at once) and is scored by the replica that received it.

Off the request path, and never in its way: the monitor's consumer hands predictions over
without waiting; a background task writes them in batches, one script call per batch.
Every prediction is also kept in a `LocalPredictionLog`: while a write is pending (or Redis
is down) a label that reaches the serving replica still joins there. Writes that fail are
retried, and past `buffer` pending ones the oldest are dropped; both are counted
(`on_fallback`). A join while Redis is unreachable raises `PredictionLogUnavailableError`
and joins nothing: a label for another replica's call cannot be told from an unknown one,
and a caller told "retry" loses no label.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Literal

import msgspec
import numpy as np
import redis.asyncio as aioredis
from redis.exceptions import RedisError

from monitor.feedback import (
    FeedbackItem,
    FeedbackResult,
    Found,
    LocalPredictionLog,
    PredictionLogUnavailableError,
    Remembered,
    remembered,
    settle,
)
from monitor.traffic import TrafficPanes
from registry.manifest import Manifest

logger = logging.getLogger(__name__)
FLUSH_BATCH = 500  # entries per script call: a batch holds Redis for well under a millisecond
RETRY_SECONDS = 0.5  # between attempts to write while Redis is unreachable
_ENCODE = msgspec.json.Encoder()
_REMEMBERED = msgspec.json.Decoder(Remembered)
_LABELS = msgspec.json.Decoder(list[Any])

# Adds entries to a bounded hash, then trims it by age and by count, oldest first.
# KEYS: the hash, its index (field by time), optionally a set of forgotten fields
# ARGV: capacity, cutoff (older is trimmed), key lifetime in ms, now, then field, time,
#       value triples (applied in order, so a later "" for a field overwrites its entry)
_ADD = """
local capacity, cutoff = tonumber(ARGV[1]), tonumber(ARGV[2])
for i = 5, #ARGV, 3 do
  redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 2])
  redis.call('ZADD', KEYS[2], ARGV[i + 1], ARGV[i])
end
local stale = redis.call('ZCOUNT', KEYS[2], '-inf', '(' .. ARGV[2])
local count = math.max(stale, redis.call('ZCARD', KEYS[2]) - capacity)
if count > 0 then
  for _, field in ipairs(redis.call('ZRANGE', KEYS[2], 0, count - 1)) do
    local value = redis.call('HGET', KEYS[1], field)
    if KEYS[3] and value and value ~= '' then
      redis.call('ZADD', KEYS[3], ARGV[4], field)
    end
    redis.call('HDEL', KEYS[1], field)
  end
  redis.call('ZREMRANGEBYRANK', KEYS[2], 0, count - 1)
end
for _, key in ipairs(KEYS) do redis.call('PEXPIRE', key, ARGV[3]) end
if KEYS[3] then
  redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', '(' .. ARGV[2])
  local over = redis.call('ZCARD', KEYS[3]) - capacity
  if over > 0 then redis.call('ZREMRANGEBYRANK', KEYS[3], 0, over - 1) end
end
return count
"""

# Takes predictions for their labels: each is replaced by "" so that it joins once.
# KEYS: the predictions hash, its index, its forgotten set; ARGV: cutoff, then request ids
# Replies per id: the entry, "joined" (taken before), "expired", or "" (never seen here)
_TAKE = """
local replies = {}
for i = 2, #ARGV do
  local id = ARGV[i]
  local value = redis.call('HGET', KEYS[1], id)
  local at = redis.call('ZSCORE', KEYS[2], id)
  if value == '' then
    replies[#replies + 1] = 'joined'
  elseif value and at and tonumber(at) >= tonumber(ARGV[1]) then
    redis.call('HSET', KEYS[1], id, '')
    replies[#replies + 1] = value
  elseif value or redis.call('ZSCORE', KEYS[3], id) then
    replies[#replies + 1] = 'expired'
  else
    replies[#replies + 1] = ''
  end
end
return replies
"""

Kind = Literal["prediction", "label"]


class RedisPredictionLog:
    """Every replica's sampled predictions, and the labels they got, in one Redis."""

    def __init__(
        self,
        url: str,
        traffic: TrafficPanes,
        *,
        capacity: int = 100_000,
        max_age_seconds: float = 3600.0,
        buffer: int = 10_000,
        prefix: str = "driftgate:",
        on_fallback: Callable[[str], object] | None = None,
    ) -> None:
        """`on_fallback(reason)` counts each time Redis could not be used: `write_failed`
        (a batch will be retried), `dropped` (a prediction or label that never reached
        Redis), `join_unavailable` (labels refused), `labels_local` (an export saw only this
        replica's labels)."""
        self._redis: aioredis.Redis = aioredis.Redis.from_url(
            url, socket_timeout=1.0, socket_connect_timeout=1.0
        )
        self._traffic = traffic
        self._local = LocalPredictionLog(
            traffic, capacity=capacity, max_age_seconds=max_age_seconds
        )
        self._capacity = capacity
        self._max_age = max_age_seconds
        self._buffer = buffer
        self._keys: dict[Kind, list[str]] = {
            "prediction": [
                f"{prefix}predictions",
                f"{prefix}predictions:index",
                f"{prefix}predictions:forgotten",
            ],
            "label": [f"{prefix}labels", f"{prefix}labels:index"],
        }
        self._add = self._redis.register_script(_ADD)
        self._take = self._redis.register_script(_TAKE)
        self._on_fallback = on_fallback
        self._pending: deque[tuple[Kind, str, float, bytes]] = deque()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._failing = False

    def remember(
        self, request_id: str, manifest: Manifest, outputs: Mapping[str, np.ndarray]
    ) -> None:
        """Keep a prediction here at once, and queue it for Redis (never waits)."""
        entry = remembered(manifest, outputs)
        if entry is not None:
            self._local.keep(request_id, entry)
            self._queue("prediction", request_id, entry.at, _ENCODE.encode(entry))

    async def join(self, items: list[FeedbackItem]) -> FeedbackResult:
        """Take each item's prediction from Redis, or from this replica's own log when Redis
        never saw it (its write still pending), and score the labels here.

        Raises:
            PredictionLogUnavailableError: Redis is unreachable; nothing was joined.
        """
        ids = list(dict.fromkeys(item.id for item in items))
        try:
            replies = await self._take(
                keys=self._keys["prediction"], args=[time.time() - self._max_age, *ids]
            )
        except (RedisError, OSError) as exc:
            self._fallback("join_unavailable")
            raise PredictionLogUnavailableError(
                "the shared prediction log (Redis) is unreachable: no label was joined; "
                "send them again later"
            ) from exc
        found: dict[str, Found] = {}
        absent: set[str] = set()
        for request_id, reply in zip(ids, replies, strict=True):
            if reply == b"":
                absent.add(request_id)
            elif reply == b"expired":
                found[request_id] = "expired"
            elif reply != b"joined":  # joined before: unknown, as a second label is
                with contextlib.suppress(msgspec.DecodeError):  # damaged: unknown
                    found[request_id] = _REMEMBERED.decode(reply)
        # This replica's copy of a prediction Redis has seen must never join a second time.
        self._local.discard(key for key in ids if key not in absent)
        local = self._local.take(absent)
        for request_id, entry in local.items():
            if isinstance(entry, Remembered):  # its write, still queued, must not join again
                self._queue("prediction", request_id, entry.at, b"")
        found.update(local)
        result, joined = settle(self._traffic, items, found)
        self._local.keep_labels(joined)
        now = time.time()
        for request_id, labels in joined.items():
            self._queue("label", request_id, now, _ENCODE.encode(labels))
        return result

    async def labels(self, request_ids: Iterable[str]) -> dict[str, list[Any]]:
        """Labels joined by any replica for those requests (this replica's alone while
        Redis is unreachable)."""
        ids = list(request_ids)
        local = await self._local.labels(ids)
        if not ids:
            return local
        try:
            values = await self._redis.hmget(self._keys["label"][0], ids)
        except (RedisError, OSError):
            self._fallback("labels_local")
            logger.warning("labels from Redis unavailable: the export has this replica's only")
            return local
        shared = {}
        for request_id, value in zip(ids, values, strict=True):
            if value is not None:
                with contextlib.suppress(msgspec.DecodeError):
                    shared[request_id] = _LABELS.decode(value)
        return {**shared, **local}

    async def start(self) -> None:
        """Start the writer (inside the running loop)."""
        self._wake = asyncio.Event()
        self._task = asyncio.create_task(self._write_forever(), name="driftgate-predictions")

    async def close(self) -> None:
        """Write what is pending (for up to a second), stop the writer, release Redis."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(1.0):
                while self._pending and await self._write():
                    pass
        await self._redis.aclose()

    def _queue(self, kind: Kind, request_id: str, at: float, payload: bytes) -> None:
        if len(self._pending) >= self._buffer:
            self._pending.popleft()
            self._fallback("dropped")
        self._pending.append((kind, request_id, at, payload))
        self._wake.set()

    async def _write_forever(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._pending:
                if not await self._write():
                    await asyncio.sleep(RETRY_SECONDS)

    async def _write(self) -> bool:
        """Write one batch of pending entries; on failure they go back, oldest first."""
        batch = [self._pending.popleft() for _ in range(min(FLUSH_BATCH, len(self._pending)))]
        triples: dict[Kind, list[str | float | bytes]] = {"prediction": [], "label": []}
        for kind, request_id, at, payload in batch:
            triples[kind] += [request_id, at, payload]
        now = time.time()
        lifetime = max(1, int(2 * self._max_age * 1000))  # ms; see the module's docstring
        head = [self._capacity, now - self._max_age, lifetime, now]
        written = False
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                for kind, args in triples.items():
                    if args:
                        await self._add(keys=self._keys[kind], args=[*head, *args], client=pipe)
                await pipe.execute()
            written = True
        except (RedisError, OSError):
            self._fallback("write_failed")
            if not self._failing:
                logger.warning(
                    "cannot write sampled predictions to Redis: labels for them join only "
                    "on this replica until it is back (%d waiting)",
                    len(self._pending) + len(batch),
                )
            self._failing = True
        finally:
            if not written:  # failed, or cancelled at shutdown: kept for the next attempt
                self._pending.extendleft(reversed(batch))
                while len(self._pending) > self._buffer:
                    self._pending.popleft()
                    self._fallback("dropped")
        if written and self._failing:
            logger.warning("sampled predictions reach Redis again")
            self._failing = False
        return written

    def _fallback(self, reason: str) -> None:
        if self._on_fallback is not None:
            self._on_fallback(reason)
