"""Model runtimes: something that turns input arrays into output arrays, off the event loop."""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import ClassVar, Protocol

import numpy as np
import onnxruntime as ort

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

    A run goes to a worker thread, off the event loop, unless it is predicted to be shorter
    than `inline_seconds`: handing a call to a thread and back costs tens of microseconds
    on the loop, more than a small model's whole run, so such runs are cheaper for the loop
    done in place. The prediction is a line, a fixed cost per run plus a cost per row,
    fitted at warm-up from runs of one row and of `BATCH_PROBE_ROWS` rows (a batch of 32
    costs a few single rows, not 32). Each is the fastest of several runs, timed in place:
    a loaded machine only ever makes a run slower, and a run timed in a worker thread also
    counts its wait for the GIL, which under load is the loop's time, not the model's.
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
        session = open_session(model, intra_op_threads=intra_op_threads)
        # The session's own run, past the Python wrapper's input check (the signature was
        # checked by the caller) and with one RunOptions for every run instead of a default
        # one made per call: together about 15% of a small model's run.
        self._session_run = session._sess.run
        self._run_options = ort.RunOptions()
        self._signature = signature
        self._executor = executor
        self._inline_seconds = inline_seconds
        self._observe = observe
        self._cost = RunCost.UNKNOWN  # until measured: never inline

    def warm_up(self) -> None:
        """Run the model so the first real request does not pay for allocation, and to
        fit its run time (see the class docstring)."""
        single = _zeros(self._signature, 1)
        try:
            one = self._fastest(single)
            many = (
                self._fastest(_zeros(self._signature, BATCH_PROBE_ROWS))
                if batchable(self._signature)
                else None
            )
        except Exception as exc:  # a model may reject zeros; it still serves real data
            logger.warning("warm-up run failed (the model still serves): %s", exc)
            return
        self._cost = RunCost.fit(one, many)

    @property
    def cost(self) -> RunCost:
        """The fitted run time (`RunCost.UNKNOWN` before warm-up)."""
        return self._cost

    async def predict(
        self, inputs: Mapping[str, np.ndarray], outputs: Sequence[str]
    ) -> list[np.ndarray]:
        """Run the session (in place or in the executor, see the class docstring); model
        failures become `ModelRuntimeError`."""
        rows = _rows(inputs)
        if self.runs_inline(rows):
            return self.run_inline(inputs, outputs)
        names, feeds = _as_list(outputs), _as_dict(inputs)
        try:
            results, seconds = await asyncio.get_running_loop().run_in_executor(
                self._executor, self._run, names, feeds
            )
        except Exception as exc:  # ORT raises its own exception types
            raise ModelRuntimeError(f"the model failed: {exc}") from exc
        if self._observe is not None:
            self._observe(rows, seconds)
        return results

    def runs_inline(self, rows: int) -> bool:
        """Whether a run of `rows` rows is predicted short enough to run on the loop."""
        return self._cost.seconds(rows) < self._inline_seconds

    def run_inline(
        self, inputs: Mapping[str, np.ndarray], outputs: Sequence[str]
    ) -> list[np.ndarray]:
        """Run the session here and now (the batcher's runs that `runs_inline`); model
        failures become `ModelRuntimeError`."""
        try:
            results, seconds = self._run(_as_list(outputs), _as_dict(inputs))
        except Exception as exc:  # ORT raises its own exception types
            raise ModelRuntimeError(f"the model failed: {exc}") from exc
        if self._observe is not None:
            self._observe(_rows(inputs), seconds)
        return results

    def _run(
        self, outputs: list[str], inputs: dict[str, np.ndarray]
    ) -> tuple[list[np.ndarray], float]:
        """One session run and its duration, measured where it runs (not the hand-off)."""
        started = time.perf_counter()
        results: list[np.ndarray] = self._session_run(outputs, inputs, self._run_options)
        return results, time.perf_counter() - started

    def _fastest(self, inputs: dict[str, np.ndarray]) -> float:
        outputs = [spec.name for spec in self._signature.outputs]
        return min(self._run(outputs, inputs)[1] for _ in range(WARM_UP_RUNS))


@dataclass(frozen=True, slots=True)
class RunCost:
    """A model's run time as a line: `fixed` seconds per run plus `per_row` per row."""

    fixed: float
    per_row: float

    UNKNOWN: ClassVar[RunCost]

    def seconds(self, rows: int) -> float:
        """The predicted duration of a run of `rows` rows."""
        return self.fixed + self.per_row * rows

    @classmethod
    def fit(cls, one: float, many: float | None) -> RunCost:
        """The line through a 1-row run of `one` seconds and a `BATCH_PROBE_ROWS`-row run of
        `many`; without `many` (rows cannot be batched), all of `one` counts per row."""
        if many is None:
            return cls(fixed=0.0, per_row=one)
        per_row = max(many - one, 0.0) / (BATCH_PROBE_ROWS - 1)
        return cls(fixed=max(one - per_row, 0.0), per_row=per_row)


RunCost.UNKNOWN = RunCost(fixed=math.inf, per_row=math.inf)


def batchable(signature: Signature) -> bool:
    """Whether requests can share a batch: every tensor leads with a variable batch axis."""
    return all(
        spec.shape and spec.shape[0] == -1 for spec in (*signature.inputs, *signature.outputs)
    )


WARM_UP_RUNS = 15  # the first runs allocate; the fastest of the rest is the model's cost
BATCH_PROBE_ROWS = 32  # the batch size the warm-up fits the per-row cost on


def _zeros(signature: Signature, rows: int) -> dict[str, np.ndarray]:
    """Zero inputs of `rows` rows (empty strings for BYTES), fixed dimensions as declared."""
    inputs = {}
    for spec in signature.inputs:
        shape = [
            rows if index == 0 and dim < 0 else max(dim, 1) for index, dim in enumerate(spec.shape)
        ]
        if spec.datatype == "BYTES":
            inputs[spec.name] = np.full(shape, "", dtype=object)
        else:
            inputs[spec.name] = np.zeros(shape, dtype=OIP_TO_NUMPY[spec.datatype])
    return inputs


def _rows(inputs: Mapping[str, np.ndarray]) -> int:
    first = next(iter(inputs.values()), None)
    return first.shape[0] if first is not None and first.ndim else 1


def _as_list(outputs: Sequence[str]) -> list[str]:
    return outputs if isinstance(outputs, list) else list(outputs)


def _as_dict(inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    return inputs if isinstance(inputs, dict) else dict(inputs)
