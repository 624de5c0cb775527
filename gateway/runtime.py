"""Model runtimes: something that turns input arrays into output arrays, off the event loop."""

from __future__ import annotations

import asyncio
import logging
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
    """An ONNX Runtime session, created once per version and run in a worker thread."""

    def __init__(
        self,
        model: bytes,
        signature: Signature,
        executor: Executor,
        *,
        intra_op_threads: int,
        observe: Callable[[int, float], None] | None = None,
    ) -> None:
        """`observe(rows, seconds)` is told the size and duration of every run."""
        self._session = open_session(model, intra_op_threads=intra_op_threads)
        self._signature = signature
        self._executor = executor
        self._observe = observe

    def warm_up(self) -> None:
        """Run one single-row batch so the first real request does not pay for allocation."""
        inputs = {
            spec.name: np.zeros(
                [1 if dim < 0 else dim for dim in spec.shape], dtype=OIP_TO_NUMPY[spec.datatype]
            )
            for spec in self._signature.inputs
        }
        for spec in self._signature.inputs:
            if spec.datatype == "BYTES":
                inputs[spec.name] = np.full(inputs[spec.name].shape, "", dtype=object)
        try:
            self._session.run(None, inputs)
        except Exception as exc:  # a model may reject zeros; it still serves real data
            logger.warning("warm-up run failed (the model still serves): %s", exc)

    async def predict(
        self, inputs: Mapping[str, np.ndarray], outputs: Sequence[str]
    ) -> list[np.ndarray]:
        """Run the session in the executor; model failures become `ModelRuntimeError`."""
        loop = asyncio.get_running_loop()
        started = time.perf_counter()
        try:
            results: list[np.ndarray] = await loop.run_in_executor(
                self._executor, self._session.run, list(outputs), dict(inputs)
            )
        except Exception as exc:  # ORT raises its own exception types
            raise ModelRuntimeError(f"the model failed: {exc}") from exc
        if self._observe is not None:
            first = next(iter(inputs.values()), None)
            rows = first.shape[0] if first is not None and first.ndim else 1
            self._observe(rows, time.perf_counter() - started)
        return results
