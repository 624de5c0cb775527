"""The alerting rules and the Grafana dashboard: promtool checks and unit-tests the rules, and
every metric they name is one the gateway exports."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

MONITOR = Path(__file__).resolve().parent.parent / "monitor"
RULES = MONITOR / "alerts.yml"
RULE_TESTS = MONITOR / "alerts_test.yml"
DASHBOARD = MONITOR / "dashboards" / "driftgate.json"

# Every metric family `GET /metrics` exports (monitor/metrics.py, gateway/state_metrics.py and
# the drift monitor), by the name PromQL uses for it.
EXPORTED_METRICS = frozenset(
    {
        "driftgate_requests_total",
        "driftgate_request_duration_seconds",
        "driftgate_queue_duration_seconds",
        "driftgate_inference_duration_seconds",
        "driftgate_batch_size_rows",
        "driftgate_requests_in_flight",
        "driftgate_samples_total",
        "driftgate_samples_dropped_total",
        "driftgate_shadow_copies_dropped_total",
        "driftgate_shadow_queue_depth",
        "driftgate_shadow_label_agreement_ratio",
        "driftgate_shadow_mean_abs_difference",
        "driftgate_shadow_comparisons_total",
        "driftgate_deployment_changes_total",
        "driftgate_prediction_log_fallbacks_total",
        "driftgate_traffic_weight_percent",
        "driftgate_state_backend_up",
        "driftgate_drift_version_status",
        "driftgate_drift_feature_status",
        "driftgate_drift_statistic",
        "driftgate_drift_window_samples",
        "driftgate_model_accuracy",
        "driftgate_model_accuracy_standard_error",
        "driftgate_model_mae",
        "driftgate_model_mae_standard_error",
        "driftgate_model_quality_rows",
        "driftgate_webhook_deliveries_total",
        "driftgate_webhook_retries_total",
        "driftgate_inference_log_records_total",
        "driftgate_inference_log_dropped_total",
    }
)
HISTOGRAMS = frozenset(
    {
        "driftgate_request_duration_seconds",
        "driftgate_queue_duration_seconds",
        "driftgate_inference_duration_seconds",
        "driftgate_batch_size_rows",
    }
)
METRIC_NAME = re.compile(r"\bdriftgate_[a-z_]+")
HISTOGRAM_SERIES = re.compile(r"_(bucket|count|sum)$")

# Grafana's variables, replaced by values that make a dashboard expression plain PromQL.
GRAFANA_VARIABLES = {
    "$__rate_interval": "1m",
    "$__range": "1h",
    "$model": ".*",
    "$version": ".*",
}


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    """Run promtool, failing (never skipping) where the Debian package is not installed."""
    executable = shutil.which("promtool")
    if executable is None:
        pytest.fail(
            "promtool not found: `make test` installs it with the Debian package `prometheus` "
            "(apt-get install prometheus)"
        )
    return subprocess.run(
        [executable, *args], capture_output=True, text=True, timeout=60, check=False
    )


def assert_succeeded(result: subprocess.CompletedProcess[str]) -> None:
    assert result.returncode == 0, f"{' '.join(result.args)}:\n{result.stdout}{result.stderr}"


def test_rules_are_valid() -> None:
    assert_succeeded(promtool("check", "rules", str(RULES)))


def test_rules_pass_their_unit_tests() -> None:
    assert_succeeded(promtool("test", "rules", str(RULE_TESTS)))


def dashboard_expressions(node: Any) -> Iterator[str]:
    """Every PromQL expression in a dashboard: panel targets, annotations, variables."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key in {"expr", "definition"} and isinstance(value, str):
                yield value
            else:
                yield from dashboard_expressions(value)
    elif isinstance(node, list):
        for item in node:
            yield from dashboard_expressions(item)


def exported_name(series: str) -> str:
    """The family a series name belongs to: histograms' `_bucket`, `_count`, `_sum` dropped."""
    family = HISTOGRAM_SERIES.sub("", series)
    return family if family in HISTOGRAMS else series


def unknown_metrics(text: str) -> set[str]:
    return {
        name for name in METRIC_NAME.findall(text) if exported_name(name) not in EXPORTED_METRICS
    }


def test_exported_name_maps_histogram_series_only() -> None:
    assert exported_name("driftgate_request_duration_seconds_bucket") in EXPORTED_METRICS
    assert exported_name("driftgate_batch_size_rows_sum") in EXPORTED_METRICS
    # a counter's `_count` suffix is not a histogram series: the typo must be caught
    assert unknown_metrics("rate(driftgate_requests_count[5m])") == {"driftgate_requests_count"}


def test_rules_use_exported_metrics_only() -> None:
    text = RULES.read_text()
    assert METRIC_NAME.search(text)
    assert unknown_metrics(text) == set()


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return loaded


def test_dashboard_uses_exported_metrics_only(dashboard: dict[str, Any]) -> None:
    expressions = list(dashboard_expressions(dashboard))
    assert len(expressions) > 20
    unknown = {name for expr in expressions for name in unknown_metrics(expr)}
    assert unknown == set()


def test_dashboard_covers_every_metric(dashboard: dict[str, Any]) -> None:
    used = {
        exported_name(name)
        for expr in dashboard_expressions(dashboard)
        for name in METRIC_NAME.findall(expr)
    }
    assert EXPORTED_METRICS - used == set()


def test_dashboard_has_datasource_and_model_variables(dashboard: dict[str, Any]) -> None:
    variables = {variable["name"]: variable for variable in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    assert variables["model"]["definition"] == "label_values(driftgate_requests_total, model)"
    panels = [panel for panel in dashboard["panels"] if panel["type"] != "row"]
    assert all(panel["datasource"]["uid"] == "${datasource}" for panel in panels)
    assert len({panel["id"] for panel in dashboard["panels"]}) == len(dashboard["panels"])


def as_promql(expr: str) -> str:
    """A dashboard expression as plain PromQL: Grafana's variables and `label_values` gone."""
    for variable, value in GRAFANA_VARIABLES.items():
        expr = expr.replace(variable, value)
    if expr.startswith("label_values("):  # Grafana's own function: keep its selector
        return expr.removeprefix("label_values(").rsplit(",", 1)[0]
    return expr


def test_dashboard_expressions_are_valid_promql(dashboard: dict[str, Any], tmp_path: Path) -> None:
    # promtool parses recording rules with the real PromQL parser: one rule per expression.
    rules = [
        {"record": f"dashboard:expression_{index}", "expr": as_promql(expr)}
        for index, expr in enumerate(dashboard_expressions(dashboard))
    ]
    path = tmp_path / "dashboard_rules.yml"
    # JSON is YAML: no YAML library needed to write the rule file.
    path.write_text(json.dumps({"groups": [{"name": "dashboard", "rules": rules}]}))
    assert_succeeded(promtool("check", "rules", str(path)))
