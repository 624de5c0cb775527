"""Model runtimes: something that turns input arrays into output arrays, off the event loop."""

from __future__ import annotations

import asyncio
import logging
import math
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Executor
from typing import Protocol

import numpy as np

from gateway.errors import ModelRuntimeError
from registry import Signature
from registry.datatypes import OIP_TO_NUMPY
from registry.signature import open_session

logger = logging.getLogger(__name__)


class Runtime(Protocol):
    """Runs one model version. The batcher wraps a Runtime and is itself one."""

    async def predict(
        self, inputs: Mapping[str, np.ndarray], outputs: Sequence[str]
    ) -> list[np.ndarray]:
        """The named outputs, in order, for a batch of inputs."""
        ...


class OnnxRuntime:
    """An ONNX Runtime session, created once per version.

    A run goes to a worker thread, off the event loop, unless it is measured to be shorter
    than `inline_seconds`: handing a call to a thread and back costs tens of microseconds
    on the loop, more than a tiny model's whole run, so such runs are cheaper for the loop
    done in place. The run time per row is measured at warm-up, in place and uncontended
    (the median of several runs): a run timed in a worker thread also counts its wait for
    the GIL, which under load is the loop's time, not the model's. A large batch of a
    small model still goes to a thread.
    """

    def __init__(
        self,
        model: bytes,
        signature: Signature,
        executor: Executor,
        *,
        intra_op_threads: int,
        inline_seconds: float = 0.0,
        observe: Callable[[int, float], None] | None = None,
    ) -> None:
        """`observe(rows, seconds)` is told the size and duration of every run."""
        self._session = open_session(model, intra_op_threads=intra_op_threads)
        self._signature = signature
        self._executor = executor
        self._inline_seconds = inline_seconds
        self._observe = observe
        self._seconds_per_row = math.inf  # until measured: never inline

    def warm_up(self) -> None:
        """Run single-row batches so the first real request does not pay for allocation,
        and to measure the run time."""
        inputs = {
            spec.name: np.zeros(
                [1 if dim < 0 else dim for dim in spec.shape], dtype=OIP_TO_NUMPY[spec.datatype]
            )
            for spec in self._signature.inputs
        }
        for spec in self._signature.inputs:
            if spec.datatype == "BYTES":
                inputs[spec.name] = np.full(inputs[spec.name].shape, "", dtype=object)
        timings = []
        try:
            for _ in range(WARM_UP_RUNS):
                started = time.perf_counter()
                self._session.run(None, inputs)
                timings.append(time.perf_counter() - started)
        except Exception as exc:  # a model may reject zeros; it still serves real data
            logger.warning("warm-up run failed (the model still serves): %s", exc)
            return
        self._seconds_per_row = statistics.median(timings) / _rows(inputs)

    async def predict(
        self, inputs: Mapping[str, np.ndarray], outputs: Sequence[str]
    ) -> list[np.ndarray]:
        """Run the session (in place or in the executor, see the class docstring); model
        failures become `ModelRuntimeError`."""
        rows = _rows(inputs)
        try:
            if rows * self._seconds_per_row < self._inline_seconds:
                results, seconds = self._run(list(outputs), dict(inputs))
            else:
                results, seconds = await asyncio.get_running_loop().run_in_executor(
                    self._executor, self._run, list(outputs), dict(inputs)
                )
        except Exception as exc:  # ORT raises its own exception types
            raise ModelRuntimeError(f"the model failed: {exc}") from exc
        if self._observe is not None:
            self._observe(rows, seconds)
        return results

    def _run(
        self, outputs: list[str], inputs: dict[str, np.ndarray]
    ) -> tuple[list[np.ndarray], float]:
        """One session run and its duration, measured where it runs (not the hand-off)."""
        started = time.perf_counter()
        results: list[np.ndarray] = self._session.run(outputs, inputs)
        return results, time.perf_counter() - started


WARM_UP_RUNS = 7  # the first runs allocate; the median sees past them


def _rows(inputs: Mapping[str, np.ndarray]) -> int:
    first = next(iter(inputs.values()), None)
    return first.shape[0] if first is not None and first.ndim else 1
