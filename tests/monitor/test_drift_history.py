"""What the drift monitor keeps beside its latest report: a bounded history of evaluations
and the merged counts the latest one judged (the console draws both)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np

from monitor.drift import HISTORY, DriftMonitor, MonitorConfig, Sample
from monitor.panes import LocalPanes
from registry import ModelRegistry


def test_history_is_bounded_and_counts_are_those_judged(home: Path) -> None:
    manifest = ModelRegistry(home / "models").manifest("affine", 2)
    monitor = DriftMonitor(MonitorConfig(pane_seconds=1.0, window_panes=30), LocalPanes())
    assert monitor.history("affine", 2) is None
    monitor.watch(manifest)
    watch = monitor.window("affine", 2)
    assert watch is not None
    rows = np.random.default_rng(3).normal(size=(300, 4)).astype(np.float32)
    rows[:, 1] += 2.0
    outputs = {"y": rows + 2.0, "total": rows.sum(axis=1)}
    watch.add([Sample("affine", 2, {"x": rows}, outputs, None)])
    empty = monitor.history("affine", 2)
    assert empty is not None
    assert (empty.evaluations, monitor.live_counts("affine", 2)) == ((), None)

    async def evaluate(times: int, start: float) -> None:
        for index in range(times):
            await monitor.evaluate(now=start + index / 1000)  # the rows stay in the window

    start = watch.inputs.pane_counts().popitem()[0]  # when the rows' pane began
    asyncio.run(evaluate(HISTORY + 5, start))

    history = monitor.history("affine", 2)
    assert history is not None
    assert len(history.evaluations) == HISTORY
    assert history.evaluations[0].at == start + 5 / 1000  # the oldest dropped first
    assert history.inputs == ("f0", "f1", "f2", "f3", "pca_reconstruction_error")
    assert history.outputs == ("y[0]", "y[1]", "y[2]", "y[3]", "total")
    report = monitor.report("affine", 2)
    assert report is not None
    latest = history.evaluations[-1]
    assert latest.at == report.evaluated_at
    assert latest.status == report.status
    assert latest.inputs == tuple(f.status for f in report.inputs.assessment.features)
    assert latest.outputs == tuple(f.status for f in report.outputs.assessment.features)
    assert latest.inputs[1] in ("warn", "drift")  # f1 moved two std

    counts = monitor.live_counts("affine", 2)
    assert counts is not None
    assert counts.evaluated_at == report.evaluated_at
    assert counts.input_layout is watch.inputs.layout
    # The panes of the window hold every row once: the counts the statistics came from.
    np.testing.assert_array_equal(counts.inputs.counts, watch.inputs.counts().counts)
    np.testing.assert_array_equal(counts.outputs.counts, watch.outputs.counts().counts)
    judged = counts.input_layout.statistics(counts.inputs)
    assert [s.count for s in judged] == [s.count for s in report.inputs.statistics] == [300] * 5
