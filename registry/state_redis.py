"""Control state in Redis: shared by every worker and replica, changes pushed by pub/sub.

    {prefix}deployments    hash: model -> Deployment JSON
    {prefix}audit          stream of AuditEntry JSON
    {prefix}audit:head     AuditHead JSON of the last entry
    {prefix}changes        pub/sub channel: the name of each changed model

A commit reads the head and the stream's last entry together, chains its audit entry onto
them (`registry.audit.chain_head`, so a damaged head or entry is survived and no sequence
number is reused), then a Lua script applies it only if neither the head nor the
deployment's revision moved (else the commit is retried or refused), so the deployment, the
entry and the notification land together or not at all.
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
from redis.exceptions import AuthenticationError, RedisError

from registry.audit import AuditEntry, AuditHead, AuditLog, chain_head, decode_head, read_log
from registry.deployment import Deployment
from registry.state import (
    Change,
    ChangeListener,
    RevisionConflictError,
    StateAuthenticationError,
    StateUnavailableError,
)

logger = logging.getLogger(__name__)
_DEPLOYMENT = msgspec.json.Decoder(Deployment)
_COMMIT_ATTEMPTS = 20
_TAIL = 8  # last stream entries read to find a readable one to chain onto
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
  if current then
    -- a damaged value counts as absent (as readers treat it), so a write repairs it
    local ok, decoded = pcall(cjson.decode, current)
    if ok and type(decoded) == 'table' then revision = decoded['revision'] or 0 end
  end
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
        self._error: StateUnavailableError | None = None
        self._listener: ChangeListener | None = None
        self._supervisor: asyncio.Task[None] | None = None
        self._connected = asyncio.Event()
        self._closing = asyncio.Event()  # set by close(): the listening loops stop

    @property
    def healthy(self) -> bool:
        """Whether the last exchange with Redis succeeded."""
        return self._healthy

    @property
    def error(self) -> StateUnavailableError | None:
        """Why Redis cannot be used (unreachable, or refusing our credentials), if so."""
        return None if self._healthy else self._error

    async def start(self, listener: ChangeListener) -> None:
        """Subscribe to changes; waits up to a few seconds for Redis, then serves regardless."""
        self._listener = listener
        self._supervisor = asyncio.create_task(self._supervise(), name="driftgate-redis-state")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._connected.wait(), timeout=3.0)

    async def close(self) -> None:
        """Stop listening and close the connection pool."""
        self._closing.set()
        if self._supervisor is not None:
            self._supervisor.cancel()
            # redis-py can swallow a cancellation that meets get_message's own timeout, and
            # the listener then blocks in a read: closing the connections ends that read,
            # and the loops stop on `_closing`.
            done, _ = await asyncio.wait({self._supervisor}, timeout=1.0)
            if not done:
                await self._redis.connection_pool.disconnect()
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
            raw_head, head = await self._head()
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

    async def audit(self) -> AuditLog:
        """Every audit entry in the stream, and the recorded head, damage included."""
        raw_head = await self._call(self._redis.get(self._keys[0]))  # first: see AuditFile.read
        records = await self._call(self._redis.xrange(self._keys[2]))
        return read_log(
            (
                (f"entry {_text(record_id)} of stream {self._keys[2]}", fields.get(b"entry", b""))
                for record_id, fields in records
            ),
            raw_head,
            f"key {self._keys[0]}",
        )

    async def _head(self) -> tuple[bytes | None, AuditHead]:
        """The recorded head as stored (the script's compare-and-set guard) and the head the
        next entry chains onto, read in one transaction."""
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.get(self._keys[0])
            pipe.xrevrange(self._keys[2], count=_TAIL)
            raw_head, tail = await self._call(pipe.execute())
        try:
            recorded = decode_head(raw_head) if raw_head else None
        except ValueError as exc:
            logger.warning("%s is %s; the next entry rewrites it", self._keys[0], exc)
            recorded = None
        return raw_head, chain_head((fields.get(b"entry", b"") for _, fields in tail), recorded)

    async def _call(self, awaitable: Any) -> Any:
        try:
            return await awaitable
        except (RedisError, OSError) as exc:
            raise self._failed(exc) from exc

    def _failed(self, exc: Exception) -> StateUnavailableError:
        """Record why Redis failed, as the error writes are refused with."""
        self._healthy = False
        if isinstance(exc, AuthenticationError):  # not an outage: waiting will not fix it
            self._error = StateAuthenticationError(
                f"Redis refused the gateway's credentials (authentication failed: {exc}); "
                "correct the password or user in redis_url"
            )
        else:
            self._error = StateUnavailableError(f"Redis is unreachable: {exc}")
        return self._error

    async def _supervise(self) -> None:
        while not self._closing.is_set():
            try:
                await self._listen()
            except (RedisError, OSError) as exc:
                if self._closing.is_set():
                    return
                was_healthy, before = self._healthy, self._error
                error = self._failed(exc)
                if was_healthy or type(before) is not type(error):  # once per kind of trouble
                    if isinstance(error, StateAuthenticationError):
                        logger.error("%s; serving the last known policy, if any", error)
                    else:
                        logger.warning("%s; serving the last known policy, if any", error)
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
            self._error = None
            self._connected.set()
            loop = asyncio.get_running_loop()
            last_ping = loop.time()
            while not self._closing.is_set():
                message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=0.2)
                if message is not None and message["type"] == "message":
                    model = _text(message["data"])
                    raw = await self._redis.hget(self._keys[1], model)
                    await self._notify(model, self._decode(model, raw) if raw else None)
                if loop.time() - last_ping > PING_INTERVAL:
                    await pubsub.ping()
                    last_ping = loop.time()

    async def _raw_deployments(self) -> dict[str, Deployment]:
        raw = await self._redis.hgetall(self._keys[1])
        decoded = {_text(key): self._decode(_text(key), value) for key, value in raw.items()}
        return {model: deployment for model, deployment in decoded.items() if deployment}

    def _decode(self, model: str, raw: bytes | str) -> Deployment | None:
        """A stored deployment; a damaged one is logged and treated as absent, so the
        model keeps the policy in force here and the next change overwrites it."""
        try:
            return _DEPLOYMENT.decode(raw)
        except (msgspec.DecodeError, ValueError, RecursionError) as exc:
            logger.error(
                "the deployment of %r in Redis hash %s is damaged (%s); keeping the one in "
                "force; set it again (driftgate traffic set) to repair it",
                model,
                self._keys[1],
                exc,
            )
            return None

    async def _notify(self, model: str, deployment: Deployment | None) -> None:
        if self._listener is not None:
            await self._listener(model, deployment)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
