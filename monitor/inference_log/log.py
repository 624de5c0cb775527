"""The inference log: a sampled record of calls, written by background tasks to its sinks.

On the request path `InferenceLog.offer` decides (hash-based, `monitor.sampling`, with the
drift monitor's salt: at a log rate at least the sample rate, every call the monitor
samples, the ones labels join with, is logged too) and appends one `Inference` holding
references to what the call already has to each sink's bounded queue. It never encodes,
copies, waits or does I/O. A sink's queue that is full drops the record and counts it
(`driftgate_inference_log_dropped_total{sink, reason="queue_full"}`); the other sinks are
not held back.

Each sink has its own task, which takes up to `batch_size` records as soon as that many
wait, or whatever waits every `flush_seconds`. A failed write is retried with exponential
backoff (`retries` times, from `backoff_seconds`, doubling up to `max_backoff_seconds`),
then the batch is dropped and counted (`failed`; `rejected` when the sink refused it for
good). At shutdown each sink has `close_seconds` to write what waits; the rest is counted
(`closed`). For every sink: records offered = stored + dropped + still queued.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Mapping, Sequence

import msgspec
import numpy as np
from opentelemetry import trace
from opentelemetry.trace import INVALID_SPAN_CONTEXT
from prometheus_client import Counter

from monitor.feedback import FeedbackItem, FeedbackResult, as_labels
from monitor.inference_log.records import Inference, Label, Record
from monitor.inference_log.sinks import LogSink, RejectedError
from monitor.metrics import GatewayMetrics
from monitor.sampling import is_sampled
from registry.manifest import Manifest

logger = logging.getLogger(__name__)
REASONS = ("queue_full", "failed", "rejected", "closed")


class LogConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """How much is logged, how it is queued and how failed writes are retried."""

    rate: float = 0.0  # fraction of calls logged, unless `model_rates` names the model
    model_rates: dict[str, float] = {}
    queue_size: int = 10_000  # records waiting per sink; more are dropped
    batch_size: int = 256  # records per write
    flush_seconds: float = 1.0  # the longest a record waits for its batch to fill
    retries: int = 5
    backoff_seconds: float = 0.2
    max_backoff_seconds: float = 10.0
    close_seconds: float = 5.0  # at shutdown, per sink
    traced: bool = True  # look up the current span (False: no tracing, save the lookup)


class InferenceLog:
    """The sampling decision, and one bounded queue and writer task per sink."""

    def __init__(
        self, config: LogConfig, sinks: Sequence[LogSink], metrics: GatewayMetrics
    ) -> None:
        self.config = config
        self._rate = config.rate
        self._rates = config.model_rates
        self._traced = config.traced
        self._runners = tuple(
            _SinkRunner(sink, config, metrics.inference_log_records, metrics.inference_log_dropped)
            for sink in sinks
        )

    def offer(
        self,
        manifest: Manifest,
        *,
        role: str,
        request_id: str | None,
        routing_key: str | None,
        inputs: Mapping[str, np.ndarray],
        outputs: Mapping[str, np.ndarray],
        latency: float,
    ) -> None:
        """Record a call if it is sampled: enqueue references, never wait."""
        model = manifest.name
        if not is_sampled(self._rates.get(model, self._rate), model, routing_key):
            return
        record = Inference(
            manifest,
            role,
            request_id,
            routing_key,
            inputs,
            outputs,
            latency,
            time.time(),
            trace.get_current_span().get_span_context() if self._traced else INVALID_SPAN_CONTEXT,
        )
        for runner in self._runners:
            runner.offer(record)

    def offer_labels(self, items: Sequence[FeedbackItem], result: FeedbackResult) -> None:
        """Record the labels feedback received (all but `invalid` ones), whatever they
        joined: the log keeps labels for every logged call, not only the sampled ones. Of
        one id sent twice in a request, the later label is recorded (the latest wins)."""
        unknown, expired, invalid = set(result.unknown), set(result.expired), set(result.invalid)
        now = time.time()
        for item in {item.id: item for item in items}.values():
            if item.id in invalid or item.label is msgspec.UNSET:  # values alone: no label
                continue
            status = (
                "unknown" if item.id in unknown else "expired" if item.id in expired else "joined"
            )
            record = Label(item.id, as_labels(item.label), status, now)
            for runner in self._runners:
                runner.offer(record)

    async def start(self) -> None:
        """Start every sink and its writer (inside the running loop)."""
        for runner in self._runners:
            await runner.start()

    async def close(self) -> None:
        """Let each sink write what waits (for up to `close_seconds`), then stop it."""
        await asyncio.gather(*(runner.close() for runner in self._runners))


class _SinkRunner:
    """One sink's bounded queue and the task that writes it in batches."""

    def __init__(
        self, sink: LogSink, config: LogConfig, records: Counter, dropped: Counter
    ) -> None:
        self.sink = sink
        self.pending: deque[Record] = deque()
        self._config = config
        self._capacity = config.queue_size
        self._batch_size = config.batch_size
        # Label children created once: counting costs an increment, not a lookup.
        self._stored = records.labels(sink.name)
        self._dropped = {reason: dropped.labels(sink.name, reason) for reason in REASONS}
        self._full = asyncio.Event()
        self._closing = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._in_hand: list[Record] | None = None  # the batch being written
        self._failing = False

    def offer(self, record: Record) -> None:
        if len(self.pending) >= self._capacity:
            self._dropped["queue_full"].inc()
            return
        self.pending.append(record)
        if len(self.pending) >= self._batch_size:
            self._full.set()

    def stored(self, count: int) -> None:
        self._stored.inc(count)

    def dropped(self, reason: str, count: int) -> None:
        self._dropped[reason].inc(count)

    async def start(self) -> None:
        self._full = asyncio.Event()
        self._closing = asyncio.Event()
        await self.sink.start(self)
        self._task = asyncio.create_task(self._run(), name=f"driftgate-log-{self.sink.name}")

    async def close(self) -> None:
        """Stop after writing what waits, or after `close_seconds` (the rest is counted)."""
        self._closing.set()
        self._full.set()
        if self._task is not None:
            _, running = await asyncio.wait({self._task}, timeout=self._config.close_seconds)
            if running:
                self._task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._task
            if self._in_hand:  # cancelled mid-write: whether the sink kept it is unknown
                self.dropped("closed", len(self._in_hand))
        try:
            await self.sink.close()
        except Exception:
            logger.exception("inference log: closing %s failed", self.sink.name)
        if self.pending:
            self.dropped("closed", len(self.pending))
            self.pending.clear()

    async def _run(self) -> None:
        while not self._closing.is_set():
            if len(self.pending) < self._batch_size:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self._config.flush_seconds):
                        await self._full.wait()
            self._full.clear()
            while self.pending:
                await self._write(self._take())
                await self._flush()
            await self._flush()

    async def _flush(self) -> None:
        try:
            await self.sink.flush()
        except Exception:  # held records stay held: the next flush tries again
            logger.exception("inference log: %s flush failed", self.sink.name)

    def _take(self) -> list[Record]:
        pending = self.pending
        return [pending.popleft() for _ in range(min(self._batch_size, len(pending)))]

    async def _write(self, batch: list[Record]) -> None:
        """Write a batch, retrying with backoff; drop it (counted) past the retries, or
        at once while closing."""
        self._in_hand = batch
        delay = self._config.backoff_seconds
        for attempt in range(self._config.retries + 1):
            try:
                await self.sink.write(batch)
            except RejectedError as exc:
                logger.warning(
                    "inference log: %s refused %d records: %s", self.sink.name, len(batch), exc
                )
                self.dropped("rejected", len(batch))
                break
            except Exception as exc:  # the sink's own errors (Redis, HTTP, disk): retried
                if not self._failing:
                    logger.warning("inference log: %s write failed: %s", self.sink.name, exc)
                    self._failing = True
                if attempt == self._config.retries:
                    self.dropped("failed", len(batch))
                    break
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(delay):  # a backoff that closing cuts short
                        await self._closing.wait()
                if self._closing.is_set():
                    self.dropped("closed", len(batch))
                    break
                delay = min(delay * 2, self._config.max_backoff_seconds)
            else:
                if self._failing:
                    logger.warning("inference log: %s writes again", self.sink.name)
                    self._failing = False
                break
        self._in_hand = None
