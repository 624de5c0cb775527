"""The retraining trigger: when a stable version's world has changed, ask for a new model.

Input drift on the stable version (the detector's `drift`, which already needs persistence)
while no rollout is running starts a drift episode; its first evaluation exports the
version's recent sampled rows to Parquet and emits one event to every configured sink (a
webhook, a Redis stream, a command), then stays quiet until the episode ends: a cool-down
after the last evaluation that was not `ok` (`monitor.episodes`; shared through Redis, so a
new leader after a failover does not fire the same episode again). Features the manifest
marks sensitive are dropped from the export or replaced by a keyed hash.
"""

from __future__ import annotations

import asyncio
import logging
import shlex
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import msgspec
import numpy as np
import polars as pl
import redis.asyncio as aioredis
from redis.exceptions import RedisError

from monitor.drift import DriftMonitor, DriftReport, VersionWatch
from monitor.episodes import EpisodeStore, LocalEpisodes
from monitor.feedback import PredictionLog
from monitor.layout import WindowLayout
from monitor.privacy import protect_sensitive
from monitor.webhooks import WebhookSender
from registry.deployment import Deployment
from registry.files import sweep_temporary, temporary_path
from registry.manifest import CategoricalProfile
from registry.state import Change, StateBackend, StateUnavailableError

logger = logging.getLogger(__name__)
# Episodes last at least this long, whatever the cool-down: far longer than a leader
# failover (a 5 s lease), so that the successor finds the episode its predecessor fired.
MIN_EPISODE_SECONDS = 60.0


class RetrainingConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Where retraining events go and how exports are written."""

    export_dir: Path
    webhook: str | None = None
    redis_url: str | None = None
    redis_stream: str = "driftgate:retraining"
    command: str | None = None  # run with the event as JSON on stdin
    command_environ: dict[str, str] | None = None  # the command's environment (None: ours)
    cooldown_seconds: float = 3600.0
    sensitive: Literal["drop", "hash"] = "drop"
    hash_key: str = ""  # HMAC key for "hash"; hashes without a secret key are guessable


class RetrainingEvent(msgspec.Struct, frozen=True, kw_only=True):
    """What a retraining pipeline receives."""

    model: str
    version: int
    detected_at: float
    drifted: dict[str, dict[str, Any]]  # feature -> its statistics and verdict
    export: str  # Parquet file of the recent sampled rows
    rows: int


class RetrainingTrigger:
    """Watches the stable versions' input drift and fires once per drift episode."""

    def __init__(
        self,
        config: RetrainingConfig,
        monitor: DriftMonitor,
        state: StateBackend,
        *,
        predictions: PredictionLog | None = None,
        episodes: EpisodeStore | None = None,
        webhooks: WebhookSender | None = None,
    ) -> None:
        """`episodes` says which versions fired already (this process's alone by default);
        `webhooks` delivers to `config.webhook` (unsigned by default)."""
        self.config = config
        self._webhooks = WebhookSender("") if webhooks is None else webhooks
        self.fired: list[RetrainingEvent] = []
        self._monitor = monitor
        self._state = state
        self._predictions = predictions
        self._episodes = LocalEpisodes() if episodes is None else episodes

    def sweep(self) -> None:
        """Remove the exports that a killed process left half-written (at start)."""
        sweep_temporary(self.config.export_dir)

    async def check(self, deployments: Mapping[str, Deployment]) -> list[RetrainingEvent]:
        """Fire for every stable version whose inputs drift and whose episode is new."""
        events = []
        for model, deployment in deployments.items():
            try:
                if (event := await self._check(model, deployment)) is not None:
                    events.append(event)
            except (RedisError, OSError, StateUnavailableError) as exc:  # Redis away: next round
                logger.warning("retraining check of %s skipped: %s", model, exc)
            except Exception:  # an export failed: the other models go on
                logger.exception("retraining check of %s failed", model)
        return events

    async def _check(self, model: str, deployment: Deployment) -> RetrainingEvent | None:
        report = self._monitor.report(model, deployment.stable)
        if report is None or report.inputs.status == "ok":
            return None  # the episode, if any, runs out by itself
        lifetime = max(self.config.cooldown_seconds, MIN_EPISODE_SECONDS)
        rollout = deployment.rollout
        # While a canary is judged, drift is the gates' business: no episode begins.
        judged = rollout is not None and rollout.status in ("running", "paused")
        # Claimed before firing: a leader killed in between loses this episode's event
        # rather than letting its successor send a second one.
        if (
            report.inputs.status == "drift"
            and not judged
            and await self._episodes.claim(report.model, report.version, lifetime)
        ):
            return await self._fire(report)
        await self._episodes.renew(report.model, report.version, lifetime)
        return None

    async def _fire(self, report: DriftReport) -> RetrainingEvent:
        watch = self._monitor.window(report.model, report.version)
        assert watch is not None
        # Copied on the loop, with no await in between: the consumer cannot add a sample to
        # one window and not yet to the other while the export reads them.
        inputs, outputs = watch.inputs.rows(), watch.outputs.rows()
        ids = list(watch.request_ids)[len(watch.request_ids) - inputs.shape[0] :]  # row by row
        snapshot = (inputs, outputs, ids)
        labels = (
            await self._predictions.labels(key for key in ids if key)
            if self._predictions is not None
            else {}
        )
        path = await asyncio.to_thread(self._export, watch, snapshot, labels, report)
        drifted = {
            assessment.name: {
                "status": assessment.status,
                "p_value": assessment.p_value,
                **msgspec.to_builtins(statistics),
            }
            for assessment, statistics in zip(
                report.inputs.assessment.features, report.inputs.statistics, strict=True
            )
            if assessment.status == "drift"
        }
        event = RetrainingEvent(
            model=report.model,
            version=report.version,
            detected_at=report.evaluated_at,
            drifted=drifted,
            export=str(path),
            rows=snapshot[0].shape[0],
        )
        await self._state.commit(
            Change(
                model=report.model,
                action="retraining.requested",
                actor="controller",
                reason=f"input drift on stable version {report.version}: {', '.join(drifted)}",
                after=event,
            )
        )
        await self._emit(event)
        self.fired.append(event)
        logger.warning(
            "retraining requested for %s v%d (%s)", report.model, report.version, ", ".join(drifted)
        )
        return event

    def _export(
        self,
        watch: VersionWatch,
        snapshot: tuple[np.ndarray, np.ndarray, list[str | None]],
        labels: Mapping[str, list[Any]],
        report: DriftReport,
    ) -> Path:
        manifest = watch.manifest
        inputs, outputs, ids = snapshot
        columns: dict[str, Any] = {}
        for direction, window, rows in (
            ("", watch.inputs, inputs),
            ("output:", watch.outputs, outputs),
        ):
            # Rows may end with derived columns (the PCA error): export what the model takes.
            width = len(manifest.features.names) if window is watch.inputs else rows.shape[1]
            for index, profile in enumerate(window.layout.profiles[:width]):
                columns[direction + profile.name] = _values(window.layout, profile, rows[:, index])
        protect_sensitive(columns, manifest.sensitive, self.config.sensitive, self.config.hash_key)
        columns["request_id"] = ids
        columns["label"] = [
            _label(labels.get(request_id)) if request_id else None for request_id in ids
        ]
        self.config.export_dir.mkdir(parents=True, exist_ok=True)
        stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(report.evaluated_at))
        path = self.config.export_dir / f"{manifest.name}-v{manifest.version}-{stamp}.parquet"
        # Readers never see half a file; a killed writer's is swept at the next start.
        temporary = temporary_path(path)
        try:
            pl.DataFrame(columns).write_parquet(temporary)
            temporary.replace(path)
        except BaseException:
            temporary.unlink(missing_ok=True)  # a full disk leaves no half file
            raise
        return path

    async def _emit(self, event: RetrainingEvent) -> None:
        payload = msgspec.json.encode(event)
        if self.config.webhook:
            await self._webhooks.post("retraining", self.config.webhook, payload)
        if self.config.redis_url:
            stream = aioredis.Redis.from_url(self.config.redis_url, socket_timeout=1.0)
            try:
                await stream.xadd(self.config.redis_stream, {"event": payload})
            except Exception:
                logger.exception("retraining event to Redis stream failed")
            finally:
                await stream.aclose()
        if self.config.command:
            process = await asyncio.create_subprocess_exec(
                *shlex.split(self.config.command),
                stdin=asyncio.subprocess.PIPE,
                env=self.config.command_environ,
            )
            await process.communicate(payload)


def _values(layout: WindowLayout, profile: object, column: np.ndarray) -> list[Any]:
    if isinstance(profile, CategoricalProfile):
        categories = layout.categories(profile.name)
        return [
            None
            if np.isnan(code)
            else categories[int(code)]
            if int(code) < len(categories)
            else "<unseen>"
            for code in column
        ]
    return [None if np.isnan(value) else float(value) for value in column]


def _label(labels: list[Any] | None) -> str | None:
    return None if labels is None else str(labels[0] if len(labels) == 1 else labels)
