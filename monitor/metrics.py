"""Prometheus metrics of the request path, on a registry the app factory creates.

Names follow Prometheus conventions: `driftgate_` prefix, base units, `_total` counters
(the client adds the suffix), `_seconds` durations. Label children are created once per
(model, version, role) and cached, so a request costs a dict lookup, not a `labels()` call.
Gauges that describe state (weights, drift, agreement, backend health) are read at scrape
time by a collector instead (see `gateway.state_metrics`).
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
UNROUTED = "_unrouted"  # model label of calls that never reached a model (unknown names)


class RouteMetrics:
    """The cached label children of one (model, version, role) over one protocol."""

    __slots__ = (
        "_family",
        "_key",
        "_protocol",
        "_statuses",
        "latency",
        "samples",
        "samples_dropped",
    )

    def __init__(
        self, family: GatewayMetrics, model: str, version: str, role: str, protocol: str
    ) -> None:
        self._family = family
        self._key = (model, version, role)
        self._protocol = protocol
        self._statuses: dict[int, Counter] = {}
        self.latency = family.latency.labels(model, version, role, protocol)
        self.samples = family.samples.labels(model, version)
        self.samples_dropped = family.samples_dropped.labels(model, version)

    def observe(self, status: int, seconds: float) -> None:
        """Count one finished call and its end-to-end latency."""
        counter = self._statuses.get(status)
        if counter is None:
            counter = self._statuses[status] = self._family.requests.labels(
                *self._key, str(status), self._protocol
            )
        counter.inc()
        self.latency.observe(seconds)


class GatewayMetrics:
    """Counters and histograms updated on the request path."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        route = ["model", "version", "role"]
        self.requests = Counter(
            "driftgate_requests",
            "Inference calls by outcome (the HTTP status; a gRPC call's maps to one) and "
            "protocol (rest, grpc).",
            [*route, "status", "protocol"],
            registry=registry,
        )
        self.latency = Histogram(
            "driftgate_request_duration_seconds",
            "End-to-end inference latency inside the gateway, by protocol (rest, grpc).",
            [*route, "protocol"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        version = ["model", "version"]
        self.queue_time = Histogram(
            "driftgate_queue_duration_seconds",
            "Time a request waited for its batch to start.",
            version,
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.inference_time = Histogram(
            "driftgate_inference_duration_seconds",
            "ONNX Runtime time per batch.",
            version,
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.batch_size = Histogram(
            "driftgate_batch_size_rows",
            "Rows per ONNX Runtime call.",
            version,
            buckets=BATCH_BUCKETS,
            registry=registry,
        )
        self.in_flight = Gauge(
            "driftgate_requests_in_flight",
            "Inference calls being served.",
            registry=registry,
            multiprocess_mode="livesum",
        )
        self.samples = Counter(
            "driftgate_samples",
            "Requests sampled for the drift monitor.",
            version,
            registry=registry,
        )
        self.samples_dropped = Counter(
            "driftgate_samples_dropped",
            "Samples dropped because the monitor fell behind.",
            version,
            registry=registry,
        )
        self.shadow_dropped = Counter(
            "driftgate_shadow_copies_dropped",
            "Shadow copies dropped because shadows fell behind.",
            ["model"],
            registry=registry,
        )
        self.prediction_log_fallbacks = Counter(
            "driftgate_prediction_log_fallbacks",
            "Times the shared prediction log (Redis) could not be used, by reason: "
            "write_failed (retried), dropped (never shared: joins only on its replica), "
            "join_unavailable (labels answered 503), labels_local (an export saw this "
            "replica's labels only).",
            ["reason"],
            registry=registry,
        )
        self.webhook_deliveries = Counter(
            "driftgate_webhook_deliveries",
            "Webhook deliveries by kind (gate, notify, retraining) and outcome: delivered "
            "(2xx), refused (another status), unreachable (every attempt failed).",
            ["kind", "outcome"],
            registry=registry,
        )
        self.webhook_retries = Counter(
            "driftgate_webhook_retries",
            "Webhook attempts made again after a transport error or a 429/502/503/504.",
            ["kind"],
            registry=registry,
        )
        self.inference_log_records = Counter(
            "driftgate_inference_log_records",
            "Inference log records (calls and labels) stored, by sink (redis, http, parquet).",
            ["sink"],
            registry=registry,
        )
        self.inference_log_dropped = Counter(
            "driftgate_inference_log_dropped",
            "Inference log records a sink lost, by reason: queue_full (it fell behind), "
            "failed (writes failed past the retries), rejected (refused for good), closed "
            "(still queued at shutdown).",
            ["sink", "reason"],
            registry=registry,
        )
        self.decisions = Counter(
            "driftgate_deployment_changes",
            "Deployment changes by action (set, promote, rollback).",
            ["model", "action", "actor"],
            registry=registry,
        )
        self._routes: dict[tuple[str, int, str, str], RouteMetrics] = {}

    def route(self, model: str, version: int, role: str, protocol: str = "rest") -> RouteMetrics:
        """The cached children of a route over one protocol (created on first use)."""
        key = (model, version, role, protocol)
        children = self._routes.get(key)
        if children is None:
            children = self._routes[key] = RouteMetrics(self, model, str(version), role, protocol)
        return children
