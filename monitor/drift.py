"""The drift monitor of a gateway process: sampled rows in, judged statistics out.

The request path only offers a sample (a non-blocking put on a bounded queue; when full,
the sample is dropped and counted). A consumer task turns samples into rows and updates the
version's windows (numba kernels, microseconds per row). An evaluation task, on a fixed
interval, merges the time panes of every process, computes the statistics and lets the
detector judge them; an alarm persists over these evaluations and over fresh rows.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Mapping

import msgspec
import numpy as np

from monitor.business import BusinessValue
from monitor.detector import DriftAssessment, DriftDetector, Status, worst
from monitor.drift_config import DriftConfig
from monitor.feedback import PredictionLog
from monitor.kernels import warm_up
from monitor.layout import FeatureStatistics, WindowCounts, WindowLayout
from monitor.panes import PaneStore, RowClock, decode_counts, encode_counts
from monitor.quality import QualityMonitor, QualityReport
from monitor.sampling import RowExtractor, input_profiles
from monitor.window import DriftWindow, merge
from registry.manifest import Manifest

logger = logging.getLogger(__name__)
CONSUME_BATCH = 256  # samples the consumer takes at once
# The consumer gathers samples this long before it takes them: a window update costs about
# the same for one sample as for a hundred, so under load it updates per tens of samples,
# not per sample, and the drift figures are only this much later.
CONSUME_PAUSE = 0.02  # seconds
HISTORY = 360  # evaluations kept per version: an hour at the default 10 s interval


class MonitorConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """How much the monitor keeps and how often it judges."""

    capacity: int = 2000  # rows in each version's sliding window (and export)
    pane_seconds: float = 10.0  # width of a time pane: the grain of merging across workers
    window_panes: int = 30  # panes a drift evaluation covers: 5 minutes by default
    interval_seconds: float = 10.0  # between evaluations; `persistence` counts these
    queue_size: int = 10_000  # samples waiting for the consumer; more are dropped
    drift: DriftConfig = DriftConfig()
    model_drift: dict[str, DriftConfig] = {}  # per model, replacing `drift`


class DirectionReport(msgspec.Struct, frozen=True, kw_only=True):
    """The inputs' or the outputs' verdict, with every feature's evidence."""

    status: Status
    samples: int
    assessment: DriftAssessment
    statistics: tuple[FeatureStatistics, ...]


class DriftReport(msgspec.Struct, frozen=True, kw_only=True):
    """`GET /v1/models/{name}/versions/{v}/drift`: the latest evaluation of a version."""

    model: str
    version: int
    status: Status  # the worse of inputs and outputs
    evaluated_at: float  # seconds since the epoch
    window_start: float  # the oldest pane covered
    window_end: float
    window_seconds: float
    inputs: DirectionReport
    outputs: DirectionReport
    quality: QualityReport | None = None  # accuracy or MAE, realized and estimated
    business: dict[str, BusinessValue] = {}  # values feedback carried, by name


class Evaluated(msgspec.Struct, frozen=True, kw_only=True):
    """One past evaluation of a version: when, and every status it found."""

    at: float  # seconds since the epoch
    status: Status  # the version's
    inputs: tuple[Status, ...]  # each input feature's, in the order `DriftHistory.inputs`
    outputs: tuple[Status, ...]  # each output's, in the order `DriftHistory.outputs`


class DriftHistory(msgspec.Struct, frozen=True, kw_only=True):
    """The last `HISTORY` evaluations of a version, oldest first."""

    inputs: tuple[str, ...]  # input feature names
    outputs: tuple[str, ...]  # output names
    evaluations: tuple[Evaluated, ...]


class LiveCounts(msgspec.Struct, frozen=True, kw_only=True):
    """The counts the latest evaluation of a version judged (every process's panes merged),
    with the layouts that read them: the live distributions, without raw rows."""

    evaluated_at: float
    input_layout: WindowLayout
    inputs: WindowCounts
    output_layout: WindowLayout
    outputs: WindowCounts


class Sample(msgspec.Struct, frozen=True):
    """One sampled request, as the request path hands it over (no copy, no conversion)."""

    model: str
    version: int
    inputs: Mapping[str, np.ndarray]
    outputs: Mapping[str, np.ndarray]
    request_id: str | None


class VersionWatch:
    """Windows, extractor and detectors of one model version."""

    def __init__(self, manifest: Manifest, config: MonitorConfig) -> None:
        self.manifest = manifest
        self.inputs, self.outputs = (
            DriftWindow(
                profiles,
                capacity=config.capacity,
                pane_seconds=config.pane_seconds,
                max_panes=config.window_panes + 1,
            )
            for profiles in (input_profiles(manifest), manifest.profile.outputs)
        )
        self.extractor = RowExtractor(manifest, self.inputs.layout, self.outputs.layout)
        decisions = config.model_drift.get(manifest.name, config.drift)
        self.detectors = {"input": DriftDetector(decisions), "output": DriftDetector(decisions)}
        self.clocks = {"input": RowClock(), "output": RowClock()}
        self.report: DriftReport | None = None
        self.counts: LiveCounts | None = None  # what `report` was computed from
        self.history: deque[Evaluated] = deque(maxlen=HISTORY)
        # The request id of every row in the windows, oldest first (for exports' labels).
        self.request_ids: deque[str | None] = deque(maxlen=config.capacity)

    def add(self, samples: list[Sample]) -> None:
        """Update both windows with samples, in one kernel call per window."""
        outputs = [self.extractor.output_rows(sample.outputs) for sample in samples]
        self.inputs.update(self.extractor.input_rows(*(sample.inputs for sample in samples)))
        self.outputs.update(np.concatenate(outputs) if len(outputs) > 1 else outputs[0])
        for sample in samples:  # one id per row of the request's batch
            batch = next(iter(sample.inputs.values())).shape[0]
            self.request_ids.extend([sample.request_id] * batch)


class DriftMonitor:
    """Every watched version of one gateway process."""

    def __init__(
        self,
        config: MonitorConfig,
        panes: PaneStore,
        predictions: PredictionLog | None = None,
        quality: QualityMonitor | None = None,
    ) -> None:
        """`predictions` remembers sampled predictions for label feedback; `quality` scores
        them and reports each version's quality with its drift."""
        self.config = config
        self.predictions = predictions
        self.quality = quality
        self.dropped = 0
        self._panes = panes
        self._watches: dict[tuple[str, int], VersionWatch] = {}
        self._queue: asyncio.Queue[Sample] | None = None
        self._tasks: list[asyncio.Task[None]] = []
        # Set once the kernels are compiled: a first evaluation before then would compile
        # them on the event loop, which stops serving for as long (seconds, on a cold cache).
        self._compiled = asyncio.Event()

    async def start(self) -> None:
        """Create the queue and start consuming and evaluating (inside the running loop)."""
        self._queue = asyncio.Queue(self.config.queue_size)
        self._tasks = [
            asyncio.create_task(self._consume(), name="driftgate-monitor-consume"),
            asyncio.create_task(self._evaluate_forever(), name="driftgate-monitor"),
        ]

    async def close(self) -> None:
        """Stop both tasks."""
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def watch(self, manifest: Manifest) -> None:
        """Start watching a version (idempotent); called when it is loaded."""
        key = (manifest.name, manifest.version)
        if key not in self._watches:
            self._watches[key] = VersionWatch(manifest, self.config)

    def offer(self, sample: Sample) -> bool:
        """Queue a sample without waiting; False (and counted) when the monitor is behind."""
        if self._queue is None or (sample.model, sample.version) not in self._watches:
            return False
        try:
            self._queue.put_nowait(sample)
        except asyncio.QueueFull:
            self.dropped += 1
            return False
        return True

    def report(self, model: str, version: int) -> DriftReport | None:
        """The latest evaluation of a version, if it was evaluated yet."""
        watch = self._watches.get((model, version))
        return watch.report if watch else None

    def reports(self) -> list[DriftReport]:
        """The latest evaluation of every watched version."""
        return [watch.report for watch in self._watches.values() if watch.report is not None]

    def history(self, model: str, version: int) -> DriftHistory | None:
        """The kept evaluations of a version (empty before the first), None if not watched."""
        watch = self._watches.get((model, version))
        if watch is None:
            return None
        return DriftHistory(
            inputs=watch.inputs.layout.names,
            outputs=watch.outputs.layout.names,
            evaluations=tuple(watch.history),
        )

    def live_counts(self, model: str, version: int) -> LiveCounts | None:
        """The merged counts behind `report(model, version)`, if it was evaluated yet."""
        watch = self._watches.get((model, version))
        return watch.counts if watch else None

    def window(self, model: str, version: int) -> VersionWatch | None:
        """The windows of a version (for exports), if watched."""
        return self._watches.get((model, version))

    async def merged_outputs(
        self, model: str, version: int, since: float
    ) -> tuple[WindowLayout, WindowCounts] | None:
        """A version's output counts since `since`, over every process's panes."""
        watch = self._watches.get((model, version))
        if watch is None:
            return None
        # Read only: the drift evaluation's window of this key is longer than `since`'s.
        counts, _ = await self._merged(watch.outputs, model, version, "output", since, prune=False)
        return watch.outputs.layout, counts

    async def _merged(
        self,
        window: DriftWindow,
        model: str,
        version: int,
        direction: str,
        since: float,
        *,
        prune: bool = True,
    ) -> tuple[WindowCounts, dict[float, int]]:
        """The counts of every process's panes since `since`, and the rows per pane start."""
        own = {
            start: encode_counts(start, counts) for start, counts in window.pane_counts().items()
        }
        panes = await self._panes.exchange(
            f"drift:{model}:{version}:{direction}", own, since, prune=prune
        )
        decoded = [decode_counts(pane, window.layout) for pane in panes]
        rows: dict[float, int] = {}
        for start, counts in decoded:
            # Every row counts once per feature, missing or not: feature 0 counts the rows.
            rows[start] = rows.get(start, 0) + (
                int(counts.counts[0].sum()) if counts.counts.size else 0
            )
        merged = merge(counts for _, counts in decoded) if decoded else window.layout.empty()
        return merged, rows

    async def evaluate(self, now: float | None = None) -> list[DriftReport]:
        """Evaluate every watched version now (the loop calls this on its interval)."""
        now = time.time() if now is None else now
        span = self.config.window_panes * self.config.pane_seconds
        since = (now // self.config.pane_seconds) * self.config.pane_seconds - span
        reports = []
        for (model, version), watch in list(self._watches.items()):
            directions, merged = [], []
            for direction, window in (("input", watch.inputs), ("output", watch.outputs)):
                counts, rows = await self._merged(window, model, version, direction, since)
                merged.append(counts)
                statistics = window.layout.statistics(counts)
                seen = watch.clocks[direction].advance(rows)
                assessment = watch.detectors[direction].evaluate(statistics, rows_seen=seen)
                samples = sum(rows.values())
                directions.append(
                    DirectionReport(
                        status=assessment.status,
                        samples=samples,
                        assessment=assessment,
                        statistics=statistics,
                    )
                )
            inputs, outputs = directions
            watch.report = DriftReport(
                model=model,
                version=version,
                status=worst([inputs.status, outputs.status]),
                evaluated_at=now,
                window_start=since,
                window_end=now,
                window_seconds=now - since,
                inputs=inputs,
                outputs=outputs,
                quality=(
                    None
                    if self.quality is None
                    else await self.quality.report(watch.manifest, since)
                ),
                business=(
                    {}
                    if self.quality is None
                    else await self.quality.business(watch.manifest, since)
                ),
            )
            watch.counts = LiveCounts(
                evaluated_at=now,
                input_layout=watch.inputs.layout,
                inputs=merged[0],
                output_layout=watch.outputs.layout,
                outputs=merged[1],
            )
            watch.history.append(
                Evaluated(
                    at=now,
                    status=watch.report.status,
                    inputs=tuple(f.status for f in inputs.assessment.features),
                    outputs=tuple(f.status for f in outputs.assessment.features),
                )
            )
            reports.append(watch.report)
        return reports

    async def _consume(self) -> None:
        # Under load samples queue up while the loop serves requests; taking all that wait
        # at once makes one window update per version instead of one per sample.
        assert self._queue is not None
        # Compiled (or loaded from numba's cache) here, off the start-up path: requests only
        # queue samples, so the gateway is ready a second sooner and no request waits.
        try:
            await asyncio.to_thread(warm_up)
        finally:
            self._compiled.set()
        while True:
            batch = [await self._queue.get()]
            await asyncio.sleep(CONSUME_PAUSE)
            while not self._queue.empty() and len(batch) < CONSUME_BATCH:
                batch.append(self._queue.get_nowait())
            by_version: dict[tuple[str, int], list[Sample]] = {}
            for sample in batch:
                by_version.setdefault((sample.model, sample.version), []).append(sample)
            for key, samples in by_version.items():
                try:
                    watch = self._watches[key]
                    watch.add(samples)
                    if self.predictions is not None:
                        for sample in samples:
                            if sample.request_id is not None:
                                self.predictions.remember(
                                    sample.request_id, watch.manifest, sample.outputs
                                )
                    if self.quality is not None:
                        self.quality.observe(watch.manifest, (s.outputs for s in samples))
                except Exception:  # a malformed sample must not stop the monitor
                    logger.exception("could not add samples of %s v%d", *key)
            for _ in batch:
                self._queue.task_done()

    async def _evaluate_forever(self) -> None:
        await self._compiled.wait()
        while True:
            await asyncio.sleep(self.config.interval_seconds)
            try:
                await self.evaluate()
            except Exception:
                logger.exception("drift evaluation failed")
