"""The manifests made from `monitor/`, so that the alerts and the dashboard have one source.

Kustomize cannot make them itself: no generator of its makes a PrometheusRule, and it reads
no file outside the kustomization's own directory, so the dashboard's JSON is copied next
to the configMapGenerator that packs it. `tests/test_deploy.py` checks the copies are current.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
ALERTS = ROOT / "monitor" / "alerts.yml"
DASHBOARD = ROOT / "monitor" / "dashboards" / "driftgate.json"
MONITORING = ROOT / "deploy" / "kubernetes" / "components" / "monitoring"
RULE_MANIFEST = MONITORING / "prometheusrule.yaml"
DASHBOARD_COPY = MONITORING / "dashboards" / "driftgate.json"

_WIDTH = 88  # with the indentation, lines stay near the repository's 100
HEADER = """\
# GENERATED from monitor/alerts.yml by `python -m deploy`: edit that file, then run it again.
# tests/test_deploy.py fails while this copy differs from what the generator writes.
"""


class _Dumper(yaml.SafeDumper):
    """Writes strings as alerts.yml does: multi-line ones (PromQL) as literal blocks, long
    ones (annotations) folded, the rest plain."""


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else ">" if len(value) > _WIDTH - 20 else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str)


def prometheus_rule(alerts: str) -> str:
    """The PrometheusRule manifest (prometheus-operator's `monitoring.coreos.com/v1`) whose
    rule groups are those of `alerts`, the text of a Prometheus rule file.

    Raises:
        ValueError: `alerts` is not a rule file (a mapping holding only `groups`).
    """
    rules: Any = yaml.safe_load(alerts)
    if not isinstance(rules, dict) or set(rules) != {"groups"}:
        raise ValueError("a Prometheus rule file holds one key, `groups`")
    manifest = {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {
            "name": "driftgate",
            "labels": {
                "app.kubernetes.io/name": "driftgate",
                "app.kubernetes.io/component": "alerts",
            },
        },
        "spec": {"groups": rules["groups"]},
    }
    body = yaml.dump(manifest, Dumper=_Dumper, sort_keys=False, width=_WIDTH, allow_unicode=True)
    return HEADER + body


def generated() -> dict[Path, bytes]:
    """Each generated file and the content it should have."""
    return {
        RULE_MANIFEST: prometheus_rule(ALERTS.read_text(encoding="utf-8")).encode(),
        DASHBOARD_COPY: DASHBOARD.read_bytes(),
    }


def stale() -> list[Path]:
    """The generated files that are missing or differ from their source."""
    return [
        path
        for path, content in generated().items()
        if not path.is_file() or path.read_bytes() != content
    ]


def write() -> list[Path]:
    """Write the stale generated files; returns those written."""
    files = generated()
    outdated = stale()
    for path in outdated:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(files[path])
    return outdated
