"""ONNX Runtime sessions: runs measured shorter than the hand-off stay on the loop."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from gateway.runtime import OnnxRuntime
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
