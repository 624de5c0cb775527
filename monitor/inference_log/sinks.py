"""Where the inference log goes: the sink interface, a Redis Stream and an HTTP endpoint.

A sink takes batches from its own task (`monitor.inference_log.log`), never from the
request path, and may take its time: while it is slow its queue fills and new records are
dropped (counted), the requests never wait. A write that raises is retried with backoff,
then its batch is dropped (counted); `RejectedError` is not retried.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Protocol

import httpx
import redis.asyncio as aioredis

from monitor.inference_log.records import (
    INFERENCE_TYPE,
    LABEL_TYPE,
    Inference,
    Privacy,
    Record,
    encode_event,
)

BATCH_CONTENT_TYPE = "application/cloudevents-batch+json"
RETRIED_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})
ENCODE_SLICE = 32  # records encoded between two turns of the event loop


class RejectedError(Exception):
    """The sink refused the batch for good (sending it again would not help)."""


class Counters(Protocol):
    """What a sink reports to the metrics (its runner counts the rest)."""

    def stored(self, count: int) -> None:
        """`count` records were stored for good."""
        ...

    def dropped(self, reason: str, count: int) -> None:
        """`count` records were lost, for `reason`."""
        ...


class Uncounted:
    """Counters that count nothing (a sink before `start`)."""

    def stored(self, count: int) -> None:
        """Nothing."""

    def dropped(self, reason: str, count: int) -> None:
        """Nothing."""


class LogSink(Protocol):
    """One destination of the inference log."""

    name: str  # the `sink` label of the metrics

    async def start(self, counters: Counters) -> None:
        """Open connections (inside the running loop); report to `counters` from now on."""
        ...

    async def write(self, batch: Sequence[Record]) -> None:
        """Take a batch (and store it, or hold it to store later). Raises only when the
        batch was not taken: it may be offered again."""
        ...

    async def flush(self) -> None:
        """Store what has been held long enough."""
        ...

    async def close(self) -> None:
        """Store everything held (what cannot be is counted dropped); release connections."""
        ...


async def encode_events(batch: Sequence[Record], privacy: Privacy) -> list[bytes]:
    """Each record's CloudEvent JSON (encoded once, whichever sink asks first), on the loop
    in slices of `ENCODE_SLICE` records: a short stall at a time, and no thread to pass
    the GIL to and fro (which, on a busy loop, cost far more than the encoding itself)."""
    events: list[bytes] = []
    for start in range(0, len(batch), ENCODE_SLICE):
        if start:
            await asyncio.sleep(0)  # let the calls waiting on the loop run
        events.extend(
            encode_event(record, privacy) for record in batch[start : start + ENCODE_SLICE]
        )
    return events


class RedisStreamSink:
    """Appends each record to a Redis Stream (`XADD ... MAXLEN ~ N`), one pipeline a batch.

    Entries have the fields `type` (the CloudEvent type), `model` (empty for labels) and
    `event` (the CloudEvent JSON); the stream keeps about the newest `maxlen` entries.
    """

    name = "redis"

    def __init__(self, url: str, key: str, *, maxlen: int, privacy: Privacy) -> None:
        self._redis: aioredis.Redis = aioredis.Redis.from_url(
            url, socket_timeout=2.0, socket_connect_timeout=2.0
        )
        self._key = key
        self._maxlen = maxlen
        self._privacy = privacy
        self._counters: Counters = Uncounted()

    async def start(self, counters: Counters) -> None:
        """Nothing to open: the client connects on its first write."""
        self._counters = counters

    async def write(self, batch: Sequence[Record]) -> None:
        """Add the batch in one round trip (`MAXLEN ~`: Redis trims whole nodes, cheaply)."""
        events = await encode_events(batch, self._privacy)
        async with self._redis.pipeline(transaction=False) as pipe:
            for record, event in zip(batch, events, strict=True):
                if isinstance(record, Inference):
                    kind, model = INFERENCE_TYPE, record.manifest.name
                else:
                    kind, model = LABEL_TYPE, ""
                pipe.xadd(
                    self._key,
                    {"type": kind, "model": model, "event": event},
                    maxlen=self._maxlen,
                    approximate=True,
                )
            await pipe.execute()
        self._counters.stored(len(batch))

    async def flush(self) -> None:
        """Nothing is held."""

    async def close(self) -> None:
        """Release the connections."""
        await self._redis.aclose()


class HttpSink:
    """POSTs each batch as a CloudEvents JSON batch (`application/cloudevents-batch+json`).

    A 2xx stores the batch; 408, 425, 429 and 5xx (and transport errors) are retried; any
    other status rejects the batch for good. The URL may carry a credential, so errors
    name only its host and path.
    """

    name = "http"

    def __init__(self, url: str, *, privacy: Privacy, timeout: float = 5.0) -> None:
        self._url = url
        self._privacy = privacy
        self._timeout = timeout
        self._client: httpx.AsyncClient | None = None
        self._counters: Counters = Uncounted()
        target = httpx.URL(url)
        self.target = f"{target.host}{target.path}"  # what errors may say of the URL

    async def start(self, counters: Counters) -> None:
        """Open the client (its connections are kept alive between batches)."""
        self._counters = counters
        self._client = httpx.AsyncClient(timeout=self._timeout)

    async def write(self, batch: Sequence[Record]) -> None:
        """POST the batch; raise on a status that is not 2xx."""
        assert self._client is not None, "start() first"
        events = await encode_events(batch, self._privacy)
        body = b"[" + b",".join(events) + b"]"
        try:
            response = await self._client.post(
                self._url, content=body, headers={"content-type": BATCH_CONTENT_TYPE}
            )
        except httpx.HTTPError as exc:
            raise OSError(f"POST to {self.target} failed: {type(exc).__name__}") from None
        if response.status_code in RETRIED_STATUSES:
            raise OSError(f"{self.target} answered {response.status_code}")
        if not response.is_success:
            raise RejectedError(f"{self.target} answered {response.status_code}")
        self._counters.stored(len(batch))

    async def flush(self) -> None:
        """Nothing is held."""

    async def close(self) -> None:
        """Close the client."""
        if self._client is not None:
            await self._client.aclose()
