"""Mirroring requests to shadow versions: never awaited by the caller, bounded, counted.

With tracing on, each copy carries the trace context of the call it copies, so its run is
a `shadow` span in that call's trace although it runs later, off the queue.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping, Sequence

import msgspec
import numpy as np
from opentelemetry.context import Context
from opentelemetry.context import get_current as current_context
from opentelemetry.trace import StatusCode, Tracer, get_current_span

from gateway.errors import GatewayError
from gateway.repository import ModelRepository
from monitor.agreement import ShadowAgreement

logger = logging.getLogger(__name__)


class ShadowCopy(msgspec.Struct, frozen=True):
    """One request copied to one shadow version, with the primary's answer to compare."""

    model: str
    version: int
    inputs: Mapping[str, np.ndarray]
    outputs: Sequence[str]
    primary: Sequence[np.ndarray]
    context: Context | None = None  # the call's trace context, when it is traced


class ShadowMirror:
    """A bounded queue of copies and the workers that run them on the shadow versions."""

    def __init__(
        self,
        repository: ModelRepository,
        agreement: ShadowAgreement,
        *,
        capacity: int,
        workers: int,
        tracer: Tracer | None = None,
    ) -> None:
        """With a `tracer`, a copy of a traced call runs in a `shadow` span of its trace."""
        self.agreement = agreement
        self._tracer = tracer
        self.dropped = 0
        self._repository = repository
        self._capacity = capacity
        self._worker_count = workers
        self._queue: asyncio.Queue[ShadowCopy] | None = None
        self._workers: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        """Create the queue and workers inside the running loop."""
        self._queue = asyncio.Queue(self._capacity)
        self._workers = [
            asyncio.create_task(self._work(), name=f"driftgate-shadow-{index}")
            for index in range(self._worker_count)
        ]

    async def close(self) -> None:
        """Stop the workers; copies still queued are dropped."""
        for worker in self._workers:
            worker.cancel()
        for worker in self._workers:
            with contextlib.suppress(asyncio.CancelledError):
                await worker

    def offer(self, copy: ShadowCopy) -> bool:
        """Queue a copy without waiting; when the shadows fall behind it is dropped (counted)."""
        if self._queue is None:
            return False
        if self._tracer is not None and get_current_span().is_recording():
            copy = msgspec.structs.replace(copy, context=current_context())
        try:
            self._queue.put_nowait(copy)
        except asyncio.QueueFull:
            self.dropped += 1
            return False
        return True

    @property
    def depth(self) -> int:
        """Copies waiting to run."""
        return self._queue.qsize() if self._queue is not None else 0

    async def _work(self) -> None:
        assert self._queue is not None
        while True:
            copy = await self._queue.get()
            try:
                if self._tracer is None or copy.context is None:
                    await self._run(copy)
                else:
                    with self._tracer.start_as_current_span(
                        "shadow",
                        context=copy.context,
                        attributes={
                            "driftgate.model": copy.model,
                            "driftgate.version": copy.version,
                            "driftgate.role": "shadow",
                        },
                    ):
                        await self._run(copy)
            finally:
                self._queue.task_done()

    async def _run(self, copy: ShadowCopy) -> None:
        try:
            loaded = await self._repository.get(copy.model, copy.version, routed=True)
            results = await loaded.runtime.predict(copy.inputs, copy.outputs)
            self.agreement.record(copy.model, copy.version, copy.primary, results)
        except GatewayError as exc:
            logger.warning(
                "shadow %s v%d failed: %s",
                copy.model,
                copy.version,
                exc,
                extra={"model": copy.model, "version": copy.version, "role": "shadow"},
            )
            self.agreement.record_error(copy.model, copy.version)
            get_current_span().set_status(StatusCode.ERROR, str(exc))  # the shadow span's
        except Exception as exc:  # whatever a shadow does, the worker lives on for the next
            logger.exception(
                "shadow %s v%d failed",
                copy.model,
                copy.version,
                extra={"model": copy.model, "version": copy.version, "role": "shadow"},
            )
            self.agreement.record_error(copy.model, copy.version)
            get_current_span().set_status(StatusCode.ERROR, repr(exc))
