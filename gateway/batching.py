"""Adaptive dynamic batching: a Runtime that wraps an ONNX Runtime session.

Requests that arrive in the same loop tick (many connections' data arrives in one poll) or
while a batch runs in a worker thread queue up, and the next batch takes all of them, up to
`max_batch_size` rows: under load batches grow by themselves, at low load nothing waits.
While requests come alone, each runs at once; a second one within a loop tick switches to
batching, and a batch of one lone request switches back. A batch is formed by one callback
at the end of the tick, not by a task, and a batch the session runs in place
(`OnnxRuntime.runs_inline`) runs within that callback, with no task switch at all.
`max_queue_delay` optionally holds a batch open a little longer to fill it (0, the default,
never waits). Rows are independent by
contract, so batching never changes a result; requests whose non-batch dimensions differ
never share a batch. When a batch fails, its requests run again one by one, so a request
the model cannot run fails alone, with the runtime's error, and the others in its batch are
answered; a full queue refuses new requests with 503.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence

import msgspec
import numpy as np

from gateway.errors import ServiceUnavailableError
from gateway.runtime import OnnxRuntime


class _Pending(msgspec.Struct):
    inputs: Mapping[str, np.ndarray]
    outputs: tuple[str, ...]
    rows: int
    shape_key: tuple[object, ...]
    future: asyncio.Future[list[np.ndarray]]
    enqueued: float


class AdaptiveBatcher:
    """Batches concurrent `predict` calls of one model version into fewer runtime calls."""

    def __init__(
        self,
        runtime: OnnxRuntime,
        *,
        max_batch_size: int,
        max_queue_delay: float = 0.0,
        max_queued: int = 1024,
        observe_queue: Callable[[float], None] | None = None,
    ) -> None:
        self._runtime = runtime
        self._max_rows = max_batch_size
        self._delay = max_queue_delay
        self._max_queued = max_queued
        self._observe_queue = observe_queue
        self._pending: deque[_Pending] = deque()
        self._flush_due: asyncio.Handle | None = None
        self._in_thread: asyncio.Task[None] | None = None  # the batch a worker thread runs
        self._alone = max_queue_delay == 0  # no company lately: requests run as they come
        self._run_this_tick = 0  # requests run alone since the loop tick began

    @property
    def depth(self) -> int:
        """Requests waiting for a batch."""
        return len(self._pending)

    async def predict(
        self, inputs: Mapping[str, np.ndarray], outputs: Sequence[str]
    ) -> list[np.ndarray]:
        """Queue the request and wait for its share of a batch's outputs; or, when
        requests have come alone lately, run it at once."""
        if self._alone and not self._pending and self._in_thread is None:
            # At low load a request runs at once: no future, no wait for the tick's end. A
            # second request within the same tick is company, and batching resumes.
            if self._run_this_tick == 0:
                asyncio.get_running_loop().call_soon(self._tick_ended)
            self._run_this_tick += 1
            if self._run_this_tick == 1:
                if self._observe_queue is not None:
                    self._observe_queue(0.0)
                return await self._runtime.predict(inputs, outputs)
            self._alone = False
        if len(self._pending) >= self._max_queued:
            raise ServiceUnavailableError(
                f"the batch queue is full ({self._max_queued} requests waiting); retry later"
            )
        loop = asyncio.get_running_loop()
        first = next(iter(inputs.values()))
        pending = _Pending(
            inputs=inputs,
            outputs=tuple(outputs),
            rows=first.shape[0] if first.ndim else 1,
            shape_key=(
                tuple(outputs),
                *((name, a.dtype.str, a.shape[1:]) for name, a in inputs.items()),
            ),
            future=loop.create_future(),
            enqueued=time.monotonic(),
        )
        self._pending.append(pending)
        self._schedule(loop)
        return await pending.future

    def _schedule(self, loop: asyncio.AbstractEventLoop) -> None:
        """Flush at the end of this tick (or after the queue delay), unless a flush is due
        already or a batch runs in a thread (its end schedules the next)."""
        if self._flush_due is not None or self._in_thread is not None or not self._pending:
            return
        if self._delay > 0 and self._queued_rows() < self._max_rows:
            self._flush_due = loop.call_later(self._delay, self._flush)
        else:
            self._flush_due = loop.call_soon(self._flush)

    def _tick_ended(self) -> None:
        self._run_this_tick = 0

    def _flush(self) -> None:
        """Run every queued batch the session runs in place; hand the first one it does not
        to a worker thread, the rest waiting for it. A flush of one lone request means
        requests come alone again."""
        self._flush_due = None
        flushed = 0
        while self._pending and self._in_thread is None:
            batch = self._live(self._take())
            flushed += len(batch)
            if not batch:
                continue
            inputs, outputs = _merged(batch), batch[0].outputs
            if self._runtime.runs_inline(sum(item.rows for item in batch)):
                try:
                    _settle(batch, self._runtime.run_inline(inputs, outputs))
                except Exception as exc:
                    if len(batch) == 1:
                        _fail(batch, exc)
                        continue
                    for item in batch:  # each alone: only the request that fails, fails
                        try:
                            _settle([item], self._runtime.run_inline(item.inputs, outputs))
                        except Exception as alone:  # the runtime's own error, its own
                            _fail([item], alone)
            else:
                self._in_thread = asyncio.get_running_loop().create_task(
                    self._run_in_thread(batch, inputs, outputs), name="driftgate-batch"
                )
        self._alone = flushed == 1 and not self._pending and self._delay == 0

    async def _run_in_thread(
        self, batch: list[_Pending], inputs: dict[str, np.ndarray], outputs: tuple[str, ...]
    ) -> None:
        try:
            try:
                _settle(batch, await self._runtime.predict(inputs, outputs))
            except Exception as exc:
                if len(batch) == 1:
                    _fail(batch, exc)
                    return
                for item in batch:  # each alone: only the request that fails, fails
                    try:
                        _settle([item], await self._runtime.predict(item.inputs, outputs))
                    except Exception as alone:  # the runtime's own error, its own
                        _fail([item], alone)
        finally:
            self._in_thread = None
            self._schedule(asyncio.get_running_loop())  # what queued during the run

    def _queued_rows(self) -> int:
        return sum(item.rows for item in self._pending)

    def _take(self) -> list[_Pending]:
        """The oldest request and every queued one that fits with it, in arrival order."""
        first = self._pending.popleft()
        batch, rows, skipped = [first], first.rows, []
        while self._pending and rows < self._max_rows:
            item = self._pending.popleft()
            if item.shape_key == first.shape_key and rows + item.rows <= self._max_rows:
                batch.append(item)
                rows += item.rows
            else:
                skipped.append(item)
        self._pending.extendleft(reversed(skipped))  # keep their place at the front
        return batch

    def _live(self, batch: list[_Pending]) -> list[_Pending]:
        """The batch's requests whose callers still wait, their queue time observed."""
        if self._observe_queue is not None:
            started = time.monotonic()
            for item in batch:
                self._observe_queue(started - item.enqueued)
        return [item for item in batch if not item.future.cancelled()]


def _merged(batch: list[_Pending]) -> dict[str, np.ndarray]:
    """The batch's inputs as one run's: its requests' rows, in order."""
    if len(batch) == 1:
        return dict(batch[0].inputs)
    return {name: np.concatenate([item.inputs[name] for item in batch]) for name in batch[0].inputs}


def _settle(batch: list[_Pending], merged: list[np.ndarray]) -> None:
    """Give each request its rows of the run's outputs."""
    if len(batch) == 1:
        if not batch[0].future.done():
            batch[0].future.set_result(merged)
        return
    bounds = np.cumsum([item.rows for item in batch])[:-1]
    parts = [np.split(output, bounds) for output in merged]
    for index, item in enumerate(batch):
        if not item.future.done():
            item.future.set_result([part[index] for part in parts])


def _fail(batch: list[_Pending], exc: Exception) -> None:
    for item in batch:
        if not item.future.done():
            item.future.set_exception(exc)
