"""The prediction log in Redis: a label joins wherever it arrives, whoever served the call.

    {prefix}predictions            hash: request id -> Remembered JSON, then its claim,
                                   then "done:" and the label once scored ("" joined here)
    {prefix}predictions:index      sorted set: request id by the time it was served
    {prefix}predictions:forgotten  sorted set: ids trimmed lately (a late label: "expired")
    {prefix}predictions:claims     sorted set: request id by the time its label took it
    {prefix}labels                 hash: request id -> joined labels JSON (for exports)
    {prefix}labels:index           sorted set: request id by the time it was joined

Bounded twice: every write trims entries older than `max_age_seconds` and the oldest past
`capacity`, and every key expires twice `max_age_seconds` after the last write (once for
the entries, once more for the ids that tell a late label "expired"), so an idle cluster
leaves nothing behind. A label takes its prediction in one script (it joins once, even if
sent to two replicas at once) and is scored by the replica that received it.

Taking is a claim, settled once the label is scored, so that no label is lost to a reply
that never came back: a script delivered late (after a partition heals) or whose answer was
lost has taken the prediction while its caller, timed out, answered 503. The same label sent
again finds its claim and is accepted (not scored twice); an unsettled claim older than
`CLAIM_SECONDS` is taken over and scored by whichever replica finds it first (every replica
looks every few seconds). A different label for a taken prediction is unknown, as before.

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
    accept_resent,
    item_of,
    outcome_payload,
    remembered,
    settle,
)
from monitor.traffic import TrafficPanes
from registry.manifest import Manifest

logger = logging.getLogger(__name__)
CLAIM_SECONDS = 5.0  # unsettled this long (a taker waits 1 s for its reply): another scores it
RECLAIM_SECONDS = 2.0  # how often each replica looks for such claims
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

# Claims predictions for their labels (the claim holds the label: "claim:" time ":" length
# ":" label, then the entry), so that each joins once and a retried label is recognised.
# KEYS: the predictions hash, its index, its forgotten set, its claims; ARGV: cutoff, key
# lifetime in ms, then request id and label JSON pairs. Replies per id: the entry (claimed
# now: score it), "accepted" (this label took it before: a retry), "joined" (another label
# did), "expired", or "" (never seen here).
_TAKE = """
local clock = redis.call('TIME')
local now = clock[1] + clock[2] / 1e6
local replies = {}
for i = 3, #ARGV, 2 do
  local id, label = ARGV[i], ARGV[i + 1]
  local value = redis.call('HGET', KEYS[1], id)
  local at = redis.call('ZSCORE', KEYS[2], id)
  if value == '' then
    replies[#replies + 1] = 'joined'
  elseif value and string.sub(value, 1, 5) == 'done:' then
    replies[#replies + 1] = (string.sub(value, 6) == label) and 'accepted' or 'joined'
  elseif value and string.sub(value, 1, 6) == 'claim:' then
    local _, _, length, rest = string.find(value, '^claim:[^:]*:(%d+):(.*)$')
    local same = rest and string.sub(rest, 1, tonumber(length)) == label
    replies[#replies + 1] = same and 'accepted' or 'joined'
  elseif value and at and tonumber(at) >= tonumber(ARGV[1]) then
    redis.call('HSET', KEYS[1], id, 'claim:' .. now .. ':' .. #label .. ':' .. label .. value)
    redis.call('ZADD', KEYS[4], now, id)
    replies[#replies + 1] = value
  elseif value or redis.call('ZSCORE', KEYS[3], id) then
    replies[#replies + 1] = 'expired'
  else
    replies[#replies + 1] = ''
  end
end
redis.call('PEXPIRE', KEYS[4], ARGV[2])
return replies
"""

# Settles claims once their labels are scored. KEYS: the predictions hash, its claims;
# ARGV: request ids.
_SETTLE = """
for i = 1, #ARGV do
  local value = redis.call('HGET', KEYS[1], ARGV[i])
  if value and string.sub(value, 1, 6) == 'claim:' then
    local _, _, length, rest = string.find(value, '^claim:[^:]*:(%d+):(.*)$')
    redis.call('HSET', KEYS[1], ARGV[i], 'done:' .. string.sub(rest, 1, tonumber(length)))
  end
  redis.call('ZREM', KEYS[2], ARGV[i])
end
return #ARGV
"""

# Takes over claims unsettled for longer than ARGV[1] seconds (their taker timed out or
# died), at most ARGV[2] of them, claiming each again so that one replica scores it.
# KEYS: the predictions hash, its claims. Replies: id, label, entry triples.
_RECLAIM = """
local clock = redis.call('TIME')
local now = clock[1] + clock[2] / 1e6
local replies = {}
local ids = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now - tonumber(ARGV[1]),
                       'LIMIT', 0, tonumber(ARGV[2]))
for _, id in ipairs(ids) do
  local value = redis.call('HGET', KEYS[1], id)
  local found = value and string.sub(value, 1, 6) == 'claim:'
  local _, _, length, rest
  if found then _, _, length, rest = string.find(value, '^claim:[^:]*:(%d+):(.*)$') end
  if rest then
    local label = string.sub(rest, 1, tonumber(length))
    redis.call('HSET', KEYS[1], id, 'claim:' .. now .. ':' .. #label .. ':' .. rest)
    redis.call('ZADD', KEYS[2], now, id)
    replies[#replies + 1] = id
    replies[#replies + 1] = label
    replies[#replies + 1] = string.sub(rest, tonumber(length) + 1)
  else
    redis.call('ZREM', KEYS[2], id)  -- trimmed, or settled meanwhile
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
        claim_seconds: float = CLAIM_SECONDS,
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
        self._keys: dict[Kind | Literal["claims"], list[str]] = {
            "prediction": [
                f"{prefix}predictions",
                f"{prefix}predictions:index",
                f"{prefix}predictions:forgotten",
            ],
            "claims": [f"{prefix}predictions", f"{prefix}predictions:claims"],
            "label": [f"{prefix}labels", f"{prefix}labels:index"],
        }
        self._add = self._redis.register_script(_ADD)
        self._take = self._redis.register_script(_TAKE)
        self._settle = self._redis.register_script(_SETTLE)
        self._reclaim = self._redis.register_script(_RECLAIM)
        self._unsettled: set[str] = set()  # scored here, their claims not yet settled
        self._claim_seconds = claim_seconds
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
        # What a claim keeps, so that the same item sent again is recognised: the label's JSON
        # (as before values), or the label and the values.
        labels: dict[str, bytes] = {}
        for item in items:  # the first item of an id claims; a second one is unknown
            labels.setdefault(item.id, outcome_payload(item))
        ids = list(labels)
        lifetime = max(1, int(2 * self._max_age * 1000))
        pairs = [value for request_id in ids for value in (request_id, labels[request_id])]
        try:
            replies = await self._take(
                keys=[*self._keys["prediction"], self._keys["claims"][1]],
                args=[time.time() - self._max_age, lifetime, *pairs],
            )
        except (RedisError, OSError) as exc:
            self._fallback("join_unavailable")
            raise PredictionLogUnavailableError(
                "the shared prediction log (Redis) is unreachable: no label was joined; "
                "send them again later"
            ) from exc
        found: dict[str, Found] = {}
        absent: set[str] = set()
        retried: set[str] = set()
        for request_id, reply in zip(ids, replies, strict=True):
            if reply == b"":
                absent.add(request_id)
            elif reply == b"expired":
                found[request_id] = "expired"
            elif reply == b"accepted":  # sent again after a reply that never came back
                retried.add(request_id)
            elif reply != b"joined":  # joined before: unknown, as a second label is
                with contextlib.suppress(msgspec.DecodeError):  # damaged: unknown
                    found[request_id] = _REMEMBERED.decode(reply)
        claimed = [request_id for request_id, entry in found.items() if entry != "expired"]
        # This replica's copy of a prediction Redis has seen must never join a second time.
        self._local.discard(key for key in ids if key not in absent)
        local = self._local.take(absent)
        found.update(local)
        fresh = [item for item in items if item.id not in retried]
        result, joined = settle(self._traffic, fresh, found)
        await self._settle_claims(claimed)
        for request_id, entry in local.items():
            if isinstance(entry, Remembered):  # its write, still queued, must not join again
                done = b"done:" + labels[request_id] if request_id in joined else b""
                self._queue("prediction", request_id, entry.at, done)
        self._keep_labels(joined)
        # A retry is counted once: by the first taker, or whoever takes its claim over.
        return accept_resent(result, retried)

    def _keep_labels(self, joined: Mapping[str, list[Any] | None]) -> None:
        self._local.keep_labels(joined)
        now = time.time()
        for request_id, labels in joined.items():
            if labels is not None:  # None: values alone, no label to export
                self._queue("label", request_id, now, _ENCODE.encode(labels))

    async def _settle_claims(self, request_ids: Iterable[str]) -> bool:
        """Settle the claims of labels scored here (and of any left from an earlier try);
        one that cannot be settled now is tried again by the writer."""
        self._unsettled.update(request_ids)
        if not self._unsettled:
            return True
        pending = list(self._unsettled)
        try:
            await self._settle(keys=self._keys["claims"], args=pending)
        except (RedisError, OSError):
            self._wake.set()
            return False
        self._unsettled.difference_update(pending)
        return True

    async def take_over_claims(self) -> int:
        """Score the labels whose taker never settled them (it timed out, or died):
        returns how many. Every replica calls it now and then; one takes each claim."""
        await self._settle_claims(())
        replies = await self._reclaim(keys=self._keys["claims"], args=[CLAIM_SECONDS, FLUSH_BATCH])
        found: dict[str, Found] = {}
        items = []
        for request_id, label, entry in zip(
            replies[::3], replies[1::3], replies[2::3], strict=True
        ):
            key = _text(request_id)
            with contextlib.suppress(msgspec.DecodeError):  # damaged: settled unscored
                found[key] = _REMEMBERED.decode(entry)
                items.append(item_of(key, label))
        if not replies:
            return 0
        _, joined = settle(self._traffic, items, found)
        await self._settle_claims([_text(request_id) for request_id in replies[::3]])
        self._keep_labels(joined)
        return len(joined)

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
        next_reclaim = time.monotonic() + RECLAIM_SECONDS
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), RECLAIM_SECONDS)
            self._wake.clear()
            while self._pending or self._unsettled:
                if not (await self._write() and await self._settle_claims(())):
                    await asyncio.sleep(RETRY_SECONDS)
            if time.monotonic() >= next_reclaim:
                next_reclaim = time.monotonic() + RECLAIM_SECONDS
                # Redis away: the writes above say so, and the claims wait.
                with contextlib.suppress(RedisError, OSError):
                    await self.take_over_claims()

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


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
