"""ONNX Runtime sessions: runs measured shorter than the hand-off stay on the loop."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from gateway.runtime import BATCH_PROBE_ROWS, OnnxRuntime, RunCost
from registry.signature import open_session, read_signature


class CountingExecutor(ThreadPoolExecutor):
    """A real thread pool that counts the work handed to it."""

    submitted = 0

    def submit(self, *args: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        self.submitted += 1
        return super().submit(*args, **kwargs)


def test_cheap_runs_stay_on_the_loop_and_results_do_not_change(artifacts: Path) -> None:
    model = (artifacts / "affine.onnx").read_bytes()
    signature = read_signature(open_session(model))
    rows = np.random.default_rng(0).normal(size=(3, 4)).astype(np.float32)

    def run(inline_seconds: float) -> tuple[list[np.ndarray], int]:
        with CountingExecutor(1) as executor:
            runtime = OnnxRuntime(
                model, signature, executor, intra_op_threads=1, inline_seconds=inline_seconds
            )
            runtime.warm_up()
            results = [asyncio.run(runtime.predict({"x": rows}, ["y", "total"])) for _ in range(5)]
            return results[-1], executor.submitted

    inline, inline_submitted = run(inline_seconds=1.0)  # any run is "cheap"
    threaded, threaded_submitted = run(inline_seconds=0.0)  # none is
    assert inline_submitted == 0
    assert threaded_submitted == 5
    for ours, theirs in zip(inline, threaded, strict=True):
        np.testing.assert_array_equal(ours, theirs)


def test_the_run_cost_is_a_line_through_one_row_and_a_batch() -> None:
    cost = RunCost.fit(one=40e-6, many=40e-6 + 31 * 2e-6)
    assert cost.per_row == pytest.approx(2e-6)
    assert cost.fixed == pytest.approx(38e-6)
    assert cost.seconds(1) == pytest.approx(40e-6)
    assert cost.seconds(BATCH_PROBE_ROWS) == pytest.approx(40e-6 + 31 * 2e-6)
    unbatchable = RunCost.fit(one=40e-6, many=None)  # every row pays the whole run
    assert unbatchable.seconds(3) == pytest.approx(120e-6)
    assert RunCost.fit(one=40e-6, many=30e-6).per_row == 0.0  # noise never goes negative


def test_warm_up_measures_that_a_batch_shares_the_fixed_cost(artifacts: Path) -> None:
    model = (artifacts / "affine.onnx").read_bytes()
    with ThreadPoolExecutor(1) as executor:
        runtime = OnnxRuntime(
            model, read_signature(open_session(model)), executor, intra_op_threads=1
        )
        assert runtime.cost == RunCost.UNKNOWN
        assert not runtime.runs_inline(1)  # unmeasured: never on the loop
        runtime.warm_up()
    one, batch = runtime.cost.seconds(1), runtime.cost.seconds(BATCH_PROBE_ROWS)
    assert 0 < one <= batch < BATCH_PROBE_ROWS * one
