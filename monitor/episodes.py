"""Drift episodes of the retraining trigger: which stable versions have had their one event.

An episode begins when a version's inputs drift: whoever claims it fires the one retraining
event. Every later evaluation that is not `ok` renews it, and it ends once a lifetime (the
cool-down) has passed without one. The claim is atomic, so of every controller that ever
sees the episode (a leader, its successor after a failover, two leaders for a moment) one
alone fires. `LocalEpisodes` serves one process (the embedded default, one controller by
its lock file); `RedisEpisodes` shares them through one key per episode, set only if absent
and expiring with the episode.
"""

from __future__ import annotations

import time
from typing import Protocol

import redis.asyncio as aioredis


class EpisodeStore(Protocol):
    """Drift episodes by model version, each ending `seconds` after its last renewal."""

    async def claim(self, model: str, version: int, seconds: float) -> bool:
        """Begin the version's episode unless one is running; True if this call began it."""
        ...

    async def renew(self, model: str, version: int, seconds: float) -> None:
        """Make a running episode last `seconds` from now (begins none)."""
        ...

    async def close(self) -> None:
        """Release connections."""
        ...


class LocalEpisodes:
    """The episodes of this process, in memory."""

    def __init__(self) -> None:
        self._ends: dict[tuple[str, int], float] = {}  # version -> when its episode ends

    async def claim(self, model: str, version: int, seconds: float) -> bool:
        """Begin the episode if none is running."""
        key, now = (model, version), time.monotonic()
        if self._ends.get(key, now) > now:
            return False
        self._ends[key] = now + seconds
        return True

    async def renew(self, model: str, version: int, seconds: float) -> None:
        """Extend the episode if it is running."""
        key, now = (model, version), time.monotonic()
        if self._ends.get(key, now) > now:
            self._ends[key] = now + seconds

    async def close(self) -> None:
        """Nothing to release."""


class RedisEpisodes:
    """An episode is the key `{prefix}retraining:episode:{model}:{version}`, whose value is
    when it began; Redis expires it when the episode ends."""

    def __init__(self, url: str, *, prefix: str = "driftgate:") -> None:
        self._redis: aioredis.Redis = aioredis.Redis.from_url(
            url, socket_timeout=1.0, socket_connect_timeout=1.0
        )
        self._prefix = prefix

    async def claim(self, model: str, version: int, seconds: float) -> bool:
        """`SET NX PX`: of any number of callers at once, exactly one begins the episode.

        Raises:
            RedisError, OSError: Redis is unreachable (then nobody may fire yet).
        """
        began = await self._redis.set(
            self._key(model, version), str(time.time()), nx=True, px=_milliseconds(seconds)
        )
        return bool(began)

    async def renew(self, model: str, version: int, seconds: float) -> None:
        """`PEXPIRE`, which leaves an absent key absent."""
        await self._redis.pexpire(self._key(model, version), _milliseconds(seconds))

    async def close(self) -> None:
        """Release the connection pool."""
        await self._redis.aclose()

    def _key(self, model: str, version: int) -> str:
        return f"{self._prefix}retraining:episode:{model}:{version}"


def _milliseconds(seconds: float) -> int:
    return max(1, round(seconds * 1000))
