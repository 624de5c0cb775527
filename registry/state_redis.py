"""Control state in Redis: shared by every worker and replica, changes pushed by pub/sub.

    {prefix}deployments    hash: model -> Deployment JSON
    {prefix}audit          stream of AuditEntry JSON
    {prefix}audit:head     AuditHead JSON of the last entry
    {prefix}changes        pub/sub channel: the name of each changed model

A commit computes its audit entry from the head it read, then a Lua script applies it only
if neither the head nor the deployment's revision moved (else the commit is retried or
refused), so the deployment, the entry and the notification land together or not at all.
When Redis is unreachable the backend reports itself unhealthy, refuses commits, and keeps
retrying; on reconnection it reads every deployment again, so missed changes are applied.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import msgspec
import redis.asyncio as aioredis
from redis.exceptions import RedisError

from registry.audit import AuditEntry, AuditHead
from registry.deployment import Deployment
from registry.state import Change, ChangeListener, RevisionConflictError, StateUnavailableError

logger = logging.getLogger(__name__)
_DEPLOYMENT = msgspec.json.Decoder(Deployment)
_ENTRY = msgspec.json.Decoder(AuditEntry)
_HEAD = msgspec.json.Decoder(AuditHead)
_COMMIT_ATTEMPTS = 20
RETRY_INTERVAL = 0.25  # seconds between reconnection attempts while Redis is down
PING_INTERVAL = 0.5  # seconds: a dead connection is noticed within about this long

# KEYS: head, deployments, audit stream, changes channel
# ARGV: expected head, model, expected revision ("" = no check), deployment ("" = none),
#       entry, new head
_COMMIT_SCRIPT = """
local head = redis.call('GET', KEYS[1]) or ''
if head ~= ARGV[1] then return 'head' end
if ARGV[3] ~= '' then
  local current = redis.call('HGET', KEYS[2], ARGV[2])
  local revision = 0
  if current then revision = cjson.decode(current)['revision'] or 0 end
  if tostring(revision) ~= ARGV[3] then return 'revision:' .. tostring(revision) end
end
if ARGV[4] ~= '' then redis.call('HSET', KEYS[2], ARGV[2], ARGV[4]) end
redis.call('XADD', KEYS[3], '*', 'entry', ARGV[5])
redis.call('SET', KEYS[1], ARGV[6])
redis.call('PUBLISH', KEYS[4], ARGV[2])
return 'ok'
"""


class RedisState:
    """Deployments and audit log in one Redis, for many workers and replicas."""

    kind = "redis"

    def __init__(self, url: str, *, prefix: str = "driftgate:") -> None:
        self._redis: aioredis.Redis = aioredis.Redis.from_url(
            url, socket_timeout=1.0, socket_connect_timeout=1.0
        )
        self._keys = [
            f"{prefix}audit:head",
            f"{prefix}deployments",
            f"{prefix}audit",
            f"{prefix}changes",
        ]
        self._script = self._redis.register_script(_COMMIT_SCRIPT)
        self._healthy = False
        self._listener: ChangeListener | None = None
        self._supervisor: asyncio.Task[None] | None = None
        self._connected = asyncio.Event()

    @property
    def healthy(self) -> bool:
        """Whether the last exchange with Redis succeeded."""
        return self._healthy

    async def start(self, listener: ChangeListener) -> None:
        """Subscribe to changes; waits up to a few seconds for Redis, then serves regardless."""
        self._listener = listener
        self._supervisor = asyncio.create_task(self._supervise(), name="driftgate-redis-state")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._connected.wait(), timeout=3.0)

    async def close(self) -> None:
        """Stop listening and close the connection pool."""
        if self._supervisor is not None:
            self._supervisor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._supervisor
        await self._redis.aclose()

    async def deployments(self) -> dict[str, Deployment]:
        """Every deployment stored in Redis."""
        deployments: dict[str, Deployment] = await self._call(self._raw_deployments())
        return deployments

    async def commit(self, change: Change) -> AuditEntry:
        """Apply `change` and append its audit entry atomically (see the module docstring)."""
        for _ in range(_COMMIT_ATTEMPTS):
            raw_head = await self._call(self._redis.get(self._keys[0]))
            head = _HEAD.decode(raw_head) if raw_head else AuditHead()
            entry = change.entry_after(head)
            outcome = await self._call(
                self._script(
                    keys=self._keys,
                    args=[
                        raw_head or b"",
                        change.model,
                        "" if change.expected_revision is None else str(change.expected_revision),
                        msgspec.json.encode(change.deployment) if change.deployment else b"",
                        msgspec.json.encode(entry),
                        msgspec.json.encode(AuditHead(seq=entry.seq, hash=entry.hash)),
                    ],
                )
            )
            outcome = _text(outcome)
            if outcome == "ok":
                return entry
            if outcome.startswith("revision:"):
                raise RevisionConflictError(
                    f"the deployment of {change.model!r} changed meanwhile (revision "
                    f"{outcome.partition(':')[2]}, expected {change.expected_revision}); "
                    "read it again"
                )
            # another writer appended to the audit log first: chain onto its entry
        raise StateUnavailableError("the audit log is too contended; try again")

    async def audit(self) -> tuple[list[AuditEntry], AuditHead]:
        """Every audit entry in the stream, and the recorded head."""
        records = await self._call(self._redis.xrange(self._keys[2]))
        raw_head = await self._call(self._redis.get(self._keys[0]))
        entries = [_ENTRY.decode(fields[b"entry"]) for _, fields in records]
        return entries, _HEAD.decode(raw_head) if raw_head else AuditHead()

    async def _call(self, awaitable: Any) -> Any:
        try:
            return await awaitable
        except (RedisError, OSError) as exc:
            self._healthy = False
            raise StateUnavailableError(f"Redis is unreachable: {exc}") from exc

    async def _supervise(self) -> None:
        while True:
            try:
                await self._listen()
            except (RedisError, OSError) as exc:
                if self._healthy:
                    logger.warning("lost Redis (%s); serving the last known policy", exc)
                self._healthy = False
            await asyncio.sleep(RETRY_INTERVAL)

    async def _listen(self) -> None:
        async with self._redis.pubsub() as pubsub:
            await pubsub.subscribe(self._keys[3])
            # Read everything after subscribing, so no change falls between the two.
            for model, deployment in (await self._raw_deployments()).items():
                await self._notify(model, deployment)
            if not self._healthy:
                logger.info("connected to Redis")
            self._healthy = True
            self._connected.set()
            loop = asyncio.get_running_loop()
            last_ping = loop.time()
            while True:
                message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=0.2)
                if message is not None and message["type"] == "message":
                    model = _text(message["data"])
                    raw = await self._redis.hget(self._keys[1], model)
                    await self._notify(model, _DEPLOYMENT.decode(raw) if raw else None)
                if loop.time() - last_ping > PING_INTERVAL:
                    await pubsub.ping()
                    last_ping = loop.time()

    async def _raw_deployments(self) -> dict[str, Deployment]:
        raw = await self._redis.hgetall(self._keys[1])
        return {_text(key): _DEPLOYMENT.decode(value) for key, value in raw.items()}

    async def _notify(self, model: str, deployment: Deployment | None) -> None:
        if self._listener is not None:
            await self._listener(model, deployment)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
