"""Which process runs the rollout controller: exactly one among all workers and replicas.

Embedded: an exclusive lock on a file under the data directory (released by the kernel
when its process dies). Redis: a key set only if absent, with an expiry the leader keeps
renewing; when the leader dies the key expires and another process takes it within
`ttl_seconds`. A leader that cannot renew in time stops leading before its key expires.
"""

from __future__ import annotations

import contextlib
import fcntl
import time
from pathlib import Path
from typing import IO, Protocol

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from registry.state_redis import process_identity

_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""


class Leadership(Protocol):
    """A claim to lead, re-checked before every round of decisions."""

    async def lead(self) -> bool:
        """Take or keep the lead; True while this process holds it."""
        ...

    async def close(self) -> None:
        """Give the lead up."""
        ...


class FileLeadership:
    """The process holding an exclusive flock on `path` leads."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._handle: IO[str] | None = None

    async def lead(self) -> bool:
        """Try the lock (never blocks); keep it once held."""
        if self._handle is not None:
            return True
        self._path.parent.mkdir(parents=True, exist_ok=True)
        handle = self._path.open("a")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.close()
            return False
        self._handle = handle
        return True

    async def close(self) -> None:
        """Release the lock."""
        if self._handle is not None:
            fcntl.flock(self._handle, fcntl.LOCK_UN)
            self._handle.close()
            self._handle = None


class RedisLeadership:
    """The process whose id is the value of `{prefix}controller` leads."""

    def __init__(self, url: str, *, ttl_seconds: float = 5.0, prefix: str = "driftgate:") -> None:
        self._redis: aioredis.Redis = aioredis.Redis.from_url(
            url, socket_timeout=1.0, socket_connect_timeout=1.0
        )
        self._key = f"{prefix}controller"
        self._id = process_identity()
        self._ttl_ms = int(ttl_seconds * 1000)
        self._renew = self._redis.register_script(_RENEW)
        self._valid_until = 0.0

    async def lead(self) -> bool:
        """Renew the key if it is ours, else try to take it."""
        now = time.monotonic()
        try:
            if await self._renew(keys=[self._key], args=[self._id, self._ttl_ms]) or (
                await self._redis.set(self._key, self._id, nx=True, px=self._ttl_ms)
            ):
                # Lead a little less long than the key lives: never two leaders at once.
                self._valid_until = now + self._ttl_ms / 2000
        except (RedisError, OSError):
            pass  # cannot renew: the lead lapses at _valid_until
        return time.monotonic() < self._valid_until

    async def close(self) -> None:
        """Release the key if it is still ours, and the connections."""
        with contextlib.suppress(RedisError, OSError):
            if await self._redis.get(self._key) == self._id.encode():
                await self._redis.delete(self._key)
        await self._redis.aclose()
