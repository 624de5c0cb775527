"""Adaptive dynamic batching: a Runtime that wraps a Runtime.

A lone request runs at once (no timer to wait out; at most one loop tick). Requests that
arrive while a batch is running, or in the same loop tick, queue up, and the next batch takes
all of them, up to `max_batch_size` rows: under load batches grow by themselves, at low load
nothing waits. `max_queue_delay` optionally
holds a batch open a little longer to fill it (0, the default, never waits). Rows are
independent by contract, so batching never changes a result; requests whose non-batch
dimensions differ never share a batch. A failed batch fails exactly its own requests, with
the runtime's error; a full queue refuses new requests with 503.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence

import msgspec
import numpy as np

from gateway.errors import ServiceUnavailableError
from gateway.runtime import Runtime
from registry import Signature


def batchable(signature: Signature) -> bool:
    """Whether requests can share a batch: every tensor leads with a variable batch axis."""
    return all(
        spec.shape and spec.shape[0] == -1 for spec in (*signature.inputs, *signature.outputs)
    )


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
        runtime: Runtime,
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
        self._worker: asyncio.Task[None] | None = None

    @property
    def depth(self) -> int:
        """Requests waiting for a batch."""
        return len(self._pending)

    async def predict(
        self, inputs: Mapping[str, np.ndarray], outputs: Sequence[str]
    ) -> list[np.ndarray]:
        """Queue the request and wait for its share of a batch's outputs."""
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
        if self._worker is None or self._worker.done():
            # The worker lives while there is work: an idle or released batcher holds no task.
            self._worker = loop.create_task(self._work(), name="driftgate-batcher")
        return await pending.future

    async def _work(self) -> None:
        # No await between the emptiness check and returning: a request queued after the
        # check finds this task done and starts a new one.
        while self._pending:
            if self._delay > 0 and self._queued_rows() < self._max_rows:
                await asyncio.sleep(self._delay)
            elif len(self._pending) < self._max_rows:
                # One loop tick, not a timer: requests already read in this tick (many
                # connections' data arrives in one poll) join the batch. A model run in
                # place blocks the loop, so without this its batches would all be of one.
                await asyncio.sleep(0)
            await self._run(self._take())

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

    async def _run(self, batch: list[_Pending]) -> None:
        started = time.monotonic()
        if self._observe_queue is not None:
            for item in batch:
                self._observe_queue(started - item.enqueued)
        live = [item for item in batch if not item.future.cancelled()]
        if not live:
            return
        try:
            if len(live) == 1:
                results = await self._runtime.predict(live[0].inputs, live[0].outputs)
                live[0].future.set_result(results)
                return
            inputs = {
                name: np.concatenate([item.inputs[name] for item in live])
                for name in live[0].inputs
            }
            merged = await self._runtime.predict(inputs, live[0].outputs)
        except Exception as exc:  # the runtime's own error goes to each of its requests
            for item in live:
                if not item.future.done():
                    item.future.set_exception(exc)
            return
        bounds = np.cumsum([item.rows for item in live])[:-1]
        parts = [np.split(output, bounds) for output in merged]
        for index, item in enumerate(live):
            if not item.future.done():
                item.future.set_result([part[index] for part in parts])
