"""Control state in Redis: shared by every worker and replica, changes pushed by pub/sub.

    {prefix}deployments    hash: model -> Deployment JSON
    {prefix}audit          stream of AuditEntry JSON
    {prefix}audit:head     AuditHead JSON of the last entry
    {prefix}epoch          random id of the state's lineage, written with the state
    {prefix}changes        pub/sub channel: the name of each changed model

A commit reads the epoch, the head and the stream's last entries together, chains its audit
entry onto them (`registry.audit.chain_head`, so a damaged head or entry is survived and no
sequence number is reused), then a Lua script applies it only if neither the epoch, the head
nor the deployment's revision moved (else the commit is retried or refused), so the
deployment, the entry and the notification land together or not at all.
When Redis is unreachable the backend reports itself unhealthy, refuses commits, and keeps
retrying; on reconnection it reads every deployment again, so missed changes are applied.

A Redis restarted without persistence (or flushed) comes back empty, while gateways still
serve what it held. Each backend remembers the epoch, deployments and audit head it last
read. Every read (on resubscribing, on each change, before each commit) checks the epoch;
finding the one it knew gone or replaced, the backend writes back what the store lacks
(`registry.restoration`) with one audited script guarded by the epoch it read: set only if
still absent (or unchanged), so exactly one gateway restores and the others follow it. A
commit also needs the epoch it read, so nobody writes over a store they have not checked:
a gateway that never knew the state (just started) writes into an empty store as into a new
one, and revisions then decide between its defaults and a restoration.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import uuid
from typing import Any

import msgspec
import redis.asyncio as aioredis
from redis.exceptions import AuthenticationError, RedisError

from registry.audit import AuditEntry, AuditHead, AuditLog, chain_head, decode_head, read_log
from registry.deployment import Deployment
from registry.restoration import plan_restoration
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
PING_INTERVAL = 0.5  # seconds between pings on the subscription's connection
# A connection that has answered nothing (not even a ping) for this long is dead: a silent
# partition raises no error until TCP gives up, minutes later.
SILENT_SECONDS = 2.0

# A commit, or a restoration (several deployments, a new epoch); "" stands for absent.
# KEYS: epoch, head, deployments, audit stream, changes channel
# ARGV: expected epoch, epoch to store, expected head, entry, new head, then for each
#       model changed: model, expected revision ("" = no check), deployment ("" = none)
_COMMIT_SCRIPT = """
local epoch = redis.call('GET', KEYS[1]) or ''
if epoch ~= ARGV[1] then return 'epoch' end
local head = redis.call('GET', KEYS[2]) or ''
if head ~= ARGV[3] then return 'head' end
for i = 6, #ARGV, 3 do
  if ARGV[i + 1] ~= '' then
    local current = redis.call('HGET', KEYS[3], ARGV[i])
    local revision = 0
    if current then
      -- a damaged value counts as absent (as readers treat it), so a write repairs it
      local ok, decoded = pcall(cjson.decode, current)
      if ok and type(decoded) == 'table' then revision = decoded['revision'] or 0 end
    end
    if tostring(revision) ~= ARGV[i + 1] then return 'revision:' .. tostring(revision) end
  end
end
for i = 6, #ARGV, 3 do
  if ARGV[i + 2] ~= '' then redis.call('HSET', KEYS[3], ARGV[i], ARGV[i + 2]) end
end
redis.call('XADD', KEYS[4], '*', 'entry', ARGV[4])
redis.call('SET', KEYS[2], ARGV[5])
redis.call('SET', KEYS[1], ARGV[2])
for i = 6, #ARGV, 3 do redis.call('PUBLISH', KEYS[5], ARGV[i]) end
return 'ok'
"""


def process_identity() -> str:
    """Host and process id: names this process in the audit log and the controller lease."""
    return f"{socket.gethostname()}-{os.getpid()}"


class _Snapshot(msgspec.Struct, frozen=True, kw_only=True):
    """The control state as read from Redis in one transaction."""

    epoch: str | None  # None: the store has no lineage (empty, or written before epochs)
    raw_head: bytes | None  # the recorded head as stored: a commit's compare-and-set guard
    head: AuditHead  # where the next entry chains on (seq 0: the log is empty)
    deployments: dict[str, Deployment]


class RedisState:
    """Deployments and audit log in one Redis, for many workers and replicas."""

    kind = "redis"

    def __init__(
        self, url: str, *, prefix: str = "driftgate:", identity: str | None = None
    ) -> None:
        """`identity` names this gateway in the audit entry of a restoration it makes."""
        self._redis: aioredis.Redis = aioredis.Redis.from_url(
            url, socket_timeout=1.0, socket_connect_timeout=1.0
        )
        self._keys = [
            f"{prefix}epoch",
            f"{prefix}audit:head",
            f"{prefix}deployments",
            f"{prefix}audit",
            f"{prefix}changes",
        ]
        self._epoch_key, self._head_key, self._deployments_key, self._stream, self._channel = (
            self._keys
        )
        self._identity = identity or process_identity()
        self._script = self._redis.register_script(_COMMIT_SCRIPT)
        # What this gateway last read of the state, to give back to a store that lost it.
        self._epoch: str | None = None
        self._known: dict[str, Deployment] = {}
        self._known_head = AuditHead()
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
        """Every deployment stored in Redis (restored first if Redis lost them)."""
        store: _Snapshot = await self._call(self._sync())
        return store.deployments

    async def commit(self, change: Change) -> AuditEntry:
        """Apply `change` and append its audit entry atomically (see the module docstring)."""
        for _ in range(_COMMIT_ATTEMPTS):
            store: _Snapshot = await self._call(self._sync())
            entry = change.entry_after(store.head)
            changed = [
                change.model,
                "" if change.expected_revision is None else str(change.expected_revision),
                msgspec.json.encode(change.deployment) if change.deployment else b"",
            ]
            # The first write into a store without a lineage starts one.
            outcome = await self._call(
                self._write(store, store.epoch or _new_epoch(), entry, changed)
            )
            if outcome == "ok":
                if change.deployment is not None:
                    self._known[change.model] = change.deployment
                return entry
            if outcome.startswith("revision:"):
                raise RevisionConflictError(
                    f"the deployment of {change.model!r} changed meanwhile (revision "
                    f"{outcome.partition(':')[2]}, expected {change.expected_revision}); "
                    "read it again"
                )
            # another writer appended to the audit log (or restored the store) first: read
            # it again and chain onto its entry
        raise StateUnavailableError("the audit log is too contended; try again")

    async def audit(self) -> AuditLog:
        """Every audit entry in the stream, and the recorded head, damage included."""
        await self._call(self._sync())  # a store that lost the log is given its head back
        raw_head = await self._call(self._redis.get(self._head_key))  # first: see AuditFile.read
        records = await self._call(self._redis.xrange(self._stream))
        return read_log(
            (
                (f"entry {_text(record_id)} of stream {self._stream}", fields.get(b"entry", b""))
                for record_id, fields in records
            ),
            raw_head,
            f"key {self._head_key}",
        )

    async def _sync(self) -> _Snapshot:
        """The state in Redis, first given back what this gateway knew if Redis lost it;
        remembers what it read. Raises what Redis raises (callers outside the listening
        loop wrap it in `_call`)."""
        for _ in range(_COMMIT_ATTEMPTS):
            store = await self._snapshot()
            if store.epoch is None and (store.deployments or store.head.seq):
                # Written before epochs existed: give it one, so that its loss can be seen.
                await self._redis.set(self._epoch_key, _new_epoch(), nx=True)
                continue
            if self._epoch is not None and store.epoch != self._epoch:
                await self._restore(store)
                continue  # restored, or another gateway moved first: read again
            self._epoch = store.epoch
            self._learn(store)
            return store
        raise StateUnavailableError("the control state is too contended; try again")

    def _learn(self, store: _Snapshot) -> None:
        """Remember what `store` holds. Only newer than what is known: a read that crossed
        this gateway's own write (from another task) must not make it forget that write."""
        for model, deployment in store.deployments.items():
            known = self._known.get(model)
            if known is None or deployment.revision >= known.revision:
                self._known[model] = deployment
        if store.head.seq >= self._known_head.seq:
            self._known_head = store.head

    async def _restore(self, store: _Snapshot) -> None:
        """Write back what `store` lacks of the state this gateway knew (epoch
        `self._epoch`), or, when it lacks nothing, follow the store's lineage."""
        known_epoch, epoch = self._epoch, store.epoch or _new_epoch()
        plan = plan_restoration(
            self._known,
            self._known_head,
            store.deployments,
            store.head,
            epochs=(known_epoch, epoch),
            gateway=self._identity,
        )
        if plan is None:  # another gateway restored it, or holds newer state than ours
            logger.warning(
                "the control state in Redis is no longer the one this gateway read (epoch %s, "
                "now %s); it holds all this gateway knew, so the gateway follows it",
                known_epoch,
                store.epoch,
            )
            self._epoch = store.epoch
            return
        changed: list[str | bytes] = []
        for model, deployment in plan.deployments.items():
            changed += [model, str(plan.replaces[model]), msgspec.json.encode(deployment)]
        if await self._write(store, epoch, plan.entry, changed) == "ok":
            logger.warning(
                "Redis lost its state (epoch %s, now %s): restored the deployments of %s and "
                "the audit chain at seq %d; the audit entries before it are not in Redis",
                known_epoch,
                store.epoch or "none",
                ", ".join(sorted(plan.deployments)) or "no model",
                plan.entry.seq,
            )

    async def _write(
        self, store: _Snapshot, epoch: str, entry: AuditEntry, changed: list[Any]
    ) -> str:
        """Run the commit script on the state read as `store`: "ok", or why not."""
        outcome = await self._script(
            keys=self._keys,
            args=[
                store.epoch or "",
                epoch,
                store.raw_head or b"",
                msgspec.json.encode(entry),
                msgspec.json.encode(AuditHead(seq=entry.seq, hash=entry.hash)),
                *changed,
            ],
        )
        if _text(outcome) == "ok":
            self._epoch = epoch
            self._known_head = AuditHead(seq=entry.seq, hash=entry.hash)
        return _text(outcome)

    async def _snapshot(self) -> _Snapshot:
        """The epoch, the head (as recorded and where the next entry chains on) and every
        deployment, read in one transaction."""
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.get(self._epoch_key)
            pipe.get(self._head_key)
            pipe.xrevrange(self._stream, count=_TAIL)
            pipe.hgetall(self._deployments_key)
            epoch, raw_head, tail, raw = await pipe.execute()
        try:
            recorded = decode_head(raw_head) if raw_head else None
        except ValueError as exc:
            logger.warning("%s is %s; the next entry rewrites it", self._head_key, exc)
            recorded = None
        decoded = {_text(key): self._decode(_text(key), value) for key, value in raw.items()}
        return _Snapshot(
            epoch=_text(epoch) if epoch else None,
            raw_head=raw_head,
            head=chain_head((fields.get(b"entry", b"") for _, fields in tail), recorded),
            deployments={model: deployment for model, deployment in decoded.items() if deployment},
        )

    async def _call(self, awaitable: Any) -> Any:
        try:
            return await awaitable
        except (RedisError, OSError) as exc:
            raise self._failed(exc) from exc

    def _failed(self, exc: Exception) -> StateUnavailableError:
        """Record why Redis failed, as the error writes are refused with."""
        self._healthy = False
        if isinstance(exc, StateUnavailableError):
            self._error = exc
        elif isinstance(exc, AuthenticationError):  # not an outage: waiting will not fix it
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
            except Exception as exc:  # whatever ends the listener: start again
                if self._closing.is_set():
                    return
                if not isinstance(exc, RedisError | OSError | StateUnavailableError):
                    # uvloop raises RuntimeError on a transport closed under a read; the
                    # listener must outlive it, or changes stop arriving for good.
                    logger.warning("Redis listener failed (%r); reconnecting", exc)
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
            await pubsub.subscribe(self._channel)
            # Read everything after subscribing, so no change falls between the two.
            await self._resync()
            self._connected.set()
            loop = asyncio.get_running_loop()
            last_ping = last_heard = loop.time()
            while not self._closing.is_set():
                message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=0.2)
                now = loop.time()
                if message is not None:  # a change, or the answer to a ping
                    last_heard = now
                    if message["type"] == "message":
                        model = _text(message["data"])
                        store = await self._sync()  # the epoch too: a write after a loss
                        await self._notify(model, store.deployments.get(model))
                if not self._healthy:
                    # A write failed while this connection lived: changes may have been
                    # missed meanwhile; reading everything again also proves Redis answers.
                    await self._resync()
                if now - last_heard > SILENT_SECONDS:
                    raise StateUnavailableError(
                        f"Redis has not answered for {SILENT_SECONDS:g} s (a partition?)"
                    )
                if now - last_ping > PING_INTERVAL:
                    await pubsub.ping()
                    last_ping = now

    async def _resync(self) -> None:
        """Read every deployment, apply it, and count Redis healthy again."""
        for model, deployment in (await self._sync()).deployments.items():
            await self._notify(model, deployment)
        if not self._healthy:
            logger.info("connected to Redis")
        self._healthy = True
        self._error = None

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
                self._deployments_key,
                exc,
            )
            return None

    async def _notify(self, model: str, deployment: Deployment | None) -> None:
        if self._listener is not None:
            await self._listener(model, deployment)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _new_epoch() -> str:
    return uuid.uuid4().hex
