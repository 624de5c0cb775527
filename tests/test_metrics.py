"""Prometheus metrics: the exposition of one app, and of several worker processes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
from litestar.testing import TestClient
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import ADMIN_TOKEN, free_port, wait_ready

Client = TestClient[Any]
ROWS = {"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]}]}


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of an exposition, by name and label set."""
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(text: str, name: str, **labels: str) -> float | None:
    return samples(text).get((name, frozenset(labels.items())))


def test_requests_latency_and_errors_are_counted_by_route(client: Client) -> None:
    for _ in range(3):
        assert client.post("/v2/models/affine/infer", json=ROWS).status_code == 200
    client.post("/v2/models/affine/versions/1/infer", json=ROWS)
    client.post("/v2/models/affine/infer", json={"inputs": []})
    client.post("/v2/models/nope/infer", json=ROWS)
    text = client.get("/metrics").text
    route = {"model": "affine", "version": "2", "role": "stable", "protocol": "rest"}
    assert value(text, "driftgate_requests_total", **route, status="200") == 3
    assert value(text, "driftgate_requests_total", **route, status="400") == 1
    assert (
        value(
            text,
            "driftgate_requests_total",
            model="affine",
            version="1",
            role="explicit",
            status="200",
            protocol="rest",
        )
        == 1
    )
    assert (
        value(
            text,
            "driftgate_requests_total",
            model="_unrouted",
            version="0",
            role="",
            status="404",
            protocol="rest",
        )
        == 1
    )
    assert value(text, "driftgate_request_duration_seconds_count", **route) == 4
    assert value(text, "driftgate_requests_in_flight") == 0


def test_state_gauges_follow_the_deployment(client: Client) -> None:
    body = {"stable": 2, "canary": {"version": 1, "weight": 12.5}, "shadows": []}
    headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    assert client.put("/admin/models/affine/deployment", json=body, headers=headers).is_success
    text = client.get("/metrics").text
    assert (
        value(text, "driftgate_traffic_weight_percent", model="affine", version="1", role="canary")
        == 12.5
    )
    assert (
        value(text, "driftgate_traffic_weight_percent", model="affine", version="2", role="stable")
        == 87.5
    )
    assert value(text, "driftgate_state_backend_up", backend="embedded") == 1
    names = {family.name for family in text_string_to_metric_families(text)}
    assert {
        "driftgate_requests",
        "driftgate_request_duration_seconds",
        "driftgate_shadow_queue_depth",
    } <= names


@pytest.mark.e2e
def test_several_workers_report_one_total(home: Path) -> None:
    port = free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gateway",
            "serve",
            "--home",
            str(home),
            "--port",
            str(port),
            "--workers",
            "2",
        ],
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(url, process)
        for _ in range(40):  # new connections: the kernel spreads them over both workers
            assert httpx.post(f"{url}/v2/models/affine/infer", json=ROWS).status_code == 200
        for _ in range(4):  # whichever worker answers the scrape, the total is the same
            text = httpx.get(f"{url}/metrics").text
            assert (
                value(
                    text,
                    "driftgate_requests_total",
                    model="affine",
                    version="2",
                    role="stable",
                    status="200",
                    protocol="rest",
                )
                == 40
            )
    finally:
        process.terminate()
        process.wait(timeout=15)


def test_exposition_content_type_is_sent_once_and_documented(client: Client) -> None:
    # Was "text/plain; version=1.0.0; charset=utf-8; charset=utf-8", documented as JSON.
    response = client.get("/metrics")
    assert response.headers["content-type"] == "text/plain; version=1.0.0; charset=utf-8"
    document = client.get("/docs/openapi.json").json()
    content = document["paths"]["/metrics"]["get"]["responses"]["200"]["content"]
    assert list(content) == ["text/plain; version=1.0.0"]
