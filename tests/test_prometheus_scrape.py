"""A real Prometheus server scrapes a real gateway process and loads the alerting rules."""

from __future__ import annotations

import contextlib
import json
import re
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest

from tests.conftest import free_port, running_gateway, stop_process

pytestmark = pytest.mark.e2e

RULES = Path(__file__).resolve().parent.parent / "monitor" / "alerts.yml"
INFER_BODY = {"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]}]}
CALLS = 5
DEADLINE_S = 30.0
GROUP = re.compile(r"^  - name: (\S+)$", re.MULTILINE)
ALERT = re.compile(r"^      - alert: (\S+)$", re.MULTILINE)

T = TypeVar("T")


@contextlib.contextmanager
def prometheus_server(directory: Path, target: str) -> Iterator[str]:
    """`prometheus` on a free loopback port, scraping `target` (host:port) every second and
    evaluating monitor/alerts.yml every second; yields its base URL, always stops it."""
    executable = shutil.which("prometheus")
    if executable is None:
        pytest.fail(
            "prometheus not found: `make test` installs it with the Debian package `prometheus` "
            "(apt-get install prometheus)"
        )
    config = directory / "prometheus.yml"
    # JSON is YAML: no YAML library needed to write the configuration.
    config.write_text(
        json.dumps(
            {
                "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
                "rule_files": [str(RULES)],
                "scrape_configs": [
                    {"job_name": "driftgate", "static_configs": [{"targets": [target]}]}
                ],
            }
        )
    )
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = directory / "prometheus.log"
    with log.open("wb") as output:
        process = subprocess.Popen(
            [
                executable,
                f"--config.file={config}",
                f"--storage.tsdb.path={directory / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
            ],
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    try:
        poll(lambda: ready(url, process), f"prometheus at {url} ready", log)
        yield url
    finally:
        stop_process(process)


def ready(url: str, process: subprocess.Popen[bytes]) -> bool | None:
    if process.poll() is not None:
        raise RuntimeError(f"prometheus exited with {process.returncode}")
    with contextlib.suppress(httpx.TransportError):
        return httpx.get(f"{url}/-/ready", timeout=1).status_code == 200 or None
    return None


def poll(attempt: Callable[[], T | None], what: str, log: Path) -> T:
    """The first non-None result of `attempt`, tried until DEADLINE_S have passed."""
    deadline = time.monotonic() + DEADLINE_S
    while time.monotonic() < deadline:
        if (result := attempt()) is not None:
            return result
        time.sleep(0.25)
    pytest.fail(f"no {what} after {DEADLINE_S} s; prometheus log:\n{log.read_text()}")


def api(url: str, path: str, **params: str) -> Any:
    response = httpx.get(f"{url}/api/v1/{path}", params=params, timeout=5)
    response.raise_for_status()
    body = response.json()
    assert body["status"] == "success", body
    return body["data"]


def query_value(url: str, promql: str) -> float | None:
    """The single value of an instant query, None while it returns nothing."""
    result = api(url, "query", query=promql)["result"]
    assert len(result) <= 1, result
    return float(result[0]["value"][1]) if result else None


def test_prometheus_scrapes_request_counts_and_loads_rules(home: Path, tmp_path: Path) -> None:
    with running_gateway(home) as gateway:
        for _ in range(CALLS):
            response = httpx.post(f"{gateway}/v2/models/affine/infer", json=INFER_BODY, timeout=10)
            assert response.status_code == 200, response.text
        with prometheus_server(tmp_path, gateway.removeprefix("http://")) as prometheus:
            log = tmp_path / "prometheus.log"
            promql = 'sum(driftgate_requests_total{model="affine",status="200"})'
            poll(lambda: query_value(prometheus, promql) == CALLS or None, promql, log)
            assert query_value(prometheus, 'up{job="driftgate"}') == 1

            # Every rule loaded, and evaluated against the scraped data without error (a
            # label-matching mistake only shows at evaluation time).
            def evaluated() -> list[dict[str, Any]] | None:
                groups = api(prometheus, "rules", type="alert")["groups"]
                assert {group["name"] for group in groups} == set(GROUP.findall(text))
                assert all(group["file"] == str(RULES) for group in groups)
                rules: list[dict[str, Any]] = [rule for group in groups for rule in group["rules"]]
                return rules if all(rule["health"] != "unknown" for rule in rules) else None

            text = RULES.read_text()
            rules = poll(evaluated, "evaluation of every rule", log)
            assert sorted(rule["name"] for rule in rules) == sorted(ALERT.findall(text))
            assert [(r["name"], r["lastError"]) for r in rules if r["health"] != "ok"] == []
            # a healthy gateway under light traffic raises nothing
            assert [r["name"] for r in rules if r["state"] != "inactive"] == []
