"""`GET /metrics`: the Prometheus text exposition of this gateway.

With one worker process the app's own registry is exposed. With several, `driftgate serve`
sets `PROMETHEUS_MULTIPROC_DIR` before the workers start; each worker's request-path metrics
then live in shared files, and any worker answering a scrape sums them all (prometheus
client's multiprocess mode), adding its own scrape-time state gauges, which every worker
reads from the same shared state.
"""

from __future__ import annotations

import os

from litestar import Response, get
from litestar.handlers import HTTPRouteHandler
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
# Litestar adds "; charset=utf-8" to every text/* type itself; given it twice, it sent it twice.
MEDIA_TYPE = CONTENT_TYPE_LATEST.replace("; charset=utf-8", "")


def metrics_endpoint(registry: CollectorRegistry, state: Collector) -> HTTPRouteHandler:
    """The `/metrics` route: `registry` (which holds `state`), or in multiprocess mode every
    worker's request metrics merged from their files plus this worker's `state`."""
    multiproc_dir = os.environ.get(MULTIPROC_ENV)

    @get(
        "/metrics",
        summary="Prometheus metrics",
        tags=["metrics"],
        media_type=MEDIA_TYPE,
        sync_to_thread=False,
    )
    def metrics() -> Response[bytes]:
        """Every metric in the Prometheus text format."""
        if multiproc_dir is None:
            return Response(generate_latest(registry), media_type=MEDIA_TYPE)
        merged = CollectorRegistry()
        MultiProcessCollector(merged, path=multiproc_dir)  # type: ignore[no-untyped-call]
        merged.register(state)
        return Response(generate_latest(merged), media_type=MEDIA_TYPE)

    return metrics
