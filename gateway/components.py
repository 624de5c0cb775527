"""Builders of the gateway's collaborators from its settings (used by the app factory)."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Executor

from opentelemetry.trace import Tracer

from gateway.batching import AdaptiveBatcher
from gateway.leadership import FileLeadership, Leadership, RedisLeadership
from gateway.runtime import OnnxRuntime, Runtime, batchable
from gateway.settings import Settings, child_environ
from gateway.tracing import TracedRuntime
from monitor.drift import MonitorConfig
from monitor.episodes import EpisodeStore, LocalEpisodes, RedisEpisodes
from monitor.feedback import LocalPredictionLog, PredictionLog
from monitor.feedback_redis import RedisPredictionLog
from monitor.inference_log import (
    HttpSink,
    InferenceLog,
    LogConfig,
    LogSink,
    ParquetSink,
    Privacy,
    RedisStreamSink,
)
from monitor.metrics import GatewayMetrics
from monitor.panes import LocalPanes, PaneStore, RedisPanes
from monitor.retraining import RetrainingConfig
from monitor.traffic import TrafficPanes
from registry import Manifest, ModelRegistry
from registry.state import StateBackend
from registry.state_embedded import EmbeddedState
from registry.state_redis import RedisState


def open_registry(settings: Settings) -> ModelRegistry:
    """The model registry the settings name: local, or an object store with a local cache."""
    return ModelRegistry.at(
        settings.registry_location,
        endpoint=settings.registry_endpoint,
        cache=settings.artifact_cache_path,
    )


def runtime_builder(
    settings: Settings, executor: Executor, metrics: GatewayMetrics, tracer: Tracer | None = None
) -> Callable[[Manifest, bytes], Runtime]:
    """How a verified artifact becomes a runtime: ONNX Runtime, batched when configured and
    the signature allows it, observed by the metrics, and with a `tracer` traced (outside
    the batcher: each call's span covers its wait for a batch)."""

    def build(manifest: Manifest, model: bytes) -> Runtime:
        runtime = _runtime(manifest, model)
        if tracer is None:
            return runtime
        return TracedRuntime(runtime, tracer, model=manifest.name, version=manifest.version)

    def _runtime(manifest: Manifest, model: bytes) -> Runtime:
        labels = (manifest.name, str(manifest.version))
        inference = metrics.inference_time.labels(*labels)
        batch_rows = metrics.batch_size.labels(*labels)

        def observe(rows: int, seconds: float) -> None:
            inference.observe(seconds)
            batch_rows.observe(rows)

        runtime = OnnxRuntime(
            model,
            manifest.signature,
            executor,
            intra_op_threads=settings.intra_op_threads,
            inline_seconds=settings.inline_inference_us / 1e6,
            observe=observe,
        )
        runtime.warm_up()
        batching = settings.batching_of(manifest.name)
        if batching.max_batch_size <= 1 or not batchable(manifest.signature):
            return runtime
        return AdaptiveBatcher(
            runtime,
            max_batch_size=batching.max_batch_size,
            max_queue_delay=batching.max_queue_delay_ms / 1000,
            max_queued=batching.max_queued,
            observe_queue=metrics.queue_time.labels(*labels).observe,
        )

    return build


def monitor_config(settings: Settings) -> MonitorConfig:
    """The drift monitor's part of the settings."""
    return MonitorConfig(
        capacity=settings.drift_window_rows,
        pane_seconds=settings.drift_pane_seconds,
        window_panes=settings.drift_window_panes,
        interval_seconds=settings.drift_interval_seconds,
        drift=settings.drift,
        model_drift=settings.model_drift,
    )


def drift_panes(settings: Settings) -> PaneStore:
    """Panes merged through Redis when it is configured, else this process's own."""
    return RedisPanes(settings.redis_url) if settings.redis_url else LocalPanes()


def prediction_log(
    settings: Settings, traffic: TrafficPanes, metrics: GatewayMetrics
) -> PredictionLog:
    """Where sampled predictions wait for labels: Redis when configured (a label joins on
    any replica), else this process."""
    capacity, max_age = settings.feedback_capacity, settings.feedback_max_age_seconds
    if settings.redis_url:
        fallbacks = metrics.prediction_log_fallbacks
        return RedisPredictionLog(
            settings.redis_url,
            traffic,
            capacity=capacity,
            max_age_seconds=max_age,
            on_fallback=lambda reason: fallbacks.labels(reason).inc(),
        )
    return LocalPredictionLog(traffic, capacity=capacity, max_age_seconds=max_age)


def retraining_episodes(settings: Settings) -> EpisodeStore:
    """Which versions fired a retraining: in Redis when configured (a new leader sees what
    the last one fired), else in this process (one leader by the lock file)."""
    return RedisEpisodes(settings.redis_url) if settings.redis_url else LocalEpisodes()


def state_backend(settings: Settings) -> StateBackend:
    """Redis when `redis_url` is set, else files under the data directory."""
    if settings.redis_url:
        return RedisState(settings.redis_url)
    return EmbeddedState(settings.state_path)


def check_state(settings: Settings) -> None:
    """Raise `StateDamagedError` if the embedded control state cannot be read (a preflight
    of `driftgate serve`; Redis is checked by each worker as it connects)."""
    if not settings.redis_url:
        EmbeddedState(settings.state_path).check()


def leadership(settings: Settings) -> Leadership:
    """Who runs the rollout controller: a Redis lease, else a lock file under the data dir."""
    if settings.redis_url:
        return RedisLeadership(settings.redis_url)
    return FileLeadership(settings.state_path / "controller.lock")


def retraining_config(settings: Settings) -> RetrainingConfig:
    """The retraining trigger's part of the settings; exports go under the data directory."""
    return RetrainingConfig(
        export_dir=settings.home / "exports",
        webhook=settings.retraining_webhook or None,
        redis_url=settings.redis_url if settings.retraining_stream else None,
        command=settings.retraining_command or None,
        command_environ=child_environ(),  # the command never sees the gateway's secrets
        cooldown_seconds=settings.retraining_cooldown_seconds,
        sensitive=settings.export_sensitive,
        hash_key=settings.export_hash_key,
    )


def inference_log(settings: Settings, metrics: GatewayMetrics) -> InferenceLog | None:
    """The inference log and its sinks, or None while no model's calls are logged (then the
    request path pays one branch for it). Sensitive features leave as exports do."""
    if not settings.inference_log_on:
        return None
    privacy = Privacy(sensitive=settings.export_sensitive, hash_key=settings.export_hash_key)
    sinks: list[LogSink] = []
    if settings.inference_log_stream:
        sinks.append(
            RedisStreamSink(
                settings.redis_url,
                settings.inference_log_stream,
                maxlen=settings.inference_log_stream_maxlen,
                privacy=privacy,
            )
        )
    if settings.inference_log_url:
        sinks.append(HttpSink(settings.inference_log_url, privacy=privacy))
    if settings.inference_log_parquet:
        sinks.append(
            ParquetSink(
                settings.inference_log_path,
                roll_seconds=settings.inference_log_roll_seconds,
                roll_bytes=settings.inference_log_roll_bytes,
                privacy=privacy,
            )
        )
    config = LogConfig(
        rate=settings.inference_log_rate,
        model_rates=settings.model_inference_log_rates,
        queue_size=settings.inference_log_queue_size,
        flush_seconds=settings.inference_log_flush_seconds,
        traced=settings.tracing,
    )
    return InferenceLog(config, sinks, metrics)
