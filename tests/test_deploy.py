"""The Kubernetes manifests under deploy/kubernetes: rendered with `kubectl kustomize`,
validated offline against the Kubernetes schemas that kubernetes-validate bundles (strict: an
unknown field fails), prometheus-operator's resources checked by structure, and the references
between resources followed (names, labels, ports, settings), which no schema sees."""

from __future__ import annotations

import base64
import functools
import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import msgspec
import pytest
import yaml
from kubernetes_validate import SchemaNotFoundError, ValidationError, validate
from kubernetes_validate.utils import all_versions

from deploy.generate import ALERTS, DASHBOARD, ROOT, prometheus_rule, stale
from gateway.settings import ENV_PREFIX, SECRET_FIELDS, Settings, load_settings

KUSTOMIZE = ROOT / "deploy" / "kubernetes"
BASE, EXAMPLE = "base", "overlays/example"
KUBECTL = shutil.which("kubectl")
CUSTOM_KINDS = frozenset({"ServiceMonitor", "PrometheusRule"})  # no bundled schema
# The oldest and the newest Kubernetes whose schemas kubernetes-validate bundles.
SCHEMA_VERSIONS = (all_versions()[0], all_versions()[-1])
WORKLOADS = frozenset({"Deployment", "Job"})
# prometheus-operator's Duration (monitoring.coreos.com/v1 CRDs).
DURATION = re.compile(r"^(0|(\d+y)?(\d+w)?(\d+d)?(\d+h)?(\d+m)?(\d+s)?(\d+ms)?)$")
# What its RuleGroup and Rule accept; anything else is refused by the API server.
GROUP_KEYS = {"name", "interval", "rules", "limit", "partial_response_strategy", "query_offset"}
RULE_KEYS = {"alert", "record", "expr", "for", "keep_firing_for", "labels", "annotations"}

Doc = dict[str, Any]


@functools.cache
def _render(target: str) -> tuple[Doc, ...]:
    assert KUBECTL is not None
    result = subprocess.run(
        [KUBECTL, "kustomize", str(KUSTOMIZE / target)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return tuple(doc for doc in yaml.safe_load_all(result.stdout) if doc)


def render(target: str) -> tuple[Doc, ...]:
    """The resources `kubectl kustomize` makes of `target` (a directory under deploy/kubernetes)."""
    if KUBECTL is None:
        pytest.skip("kubectl is not installed: it renders the manifests (kustomize)")
    return _render(target)


@pytest.fixture(params=[BASE, EXAMPLE])
def manifests(request: pytest.FixtureRequest) -> tuple[Doc, ...]:
    return render(request.param)


def of_kind(docs: tuple[Doc, ...], kind: str) -> list[Doc]:
    return [doc for doc in docs if doc["kind"] == kind]


def named(docs: tuple[Doc, ...], kind: str, name: str) -> Doc:
    found = [doc for doc in of_kind(docs, kind) if doc["metadata"]["name"] == name]
    assert len(found) == 1, f"{kind} {name}: {len(found)} found"
    return found[0]


def pod_specs(docs: tuple[Doc, ...]) -> Iterator[tuple[str, Doc]]:
    for doc in docs:
        if doc["kind"] in WORKLOADS:
            yield f"{doc['kind']} {doc['metadata']['name']}", doc["spec"]["template"]["spec"]


def gateway(docs: tuple[Doc, ...]) -> tuple[Doc, Doc]:
    """The gateway's pod spec and its one container."""
    spec = named(docs, "Deployment", "driftgate")["spec"]["template"]["spec"]
    (container,) = spec["containers"]
    return spec, container


def gateway_environ(docs: tuple[Doc, ...]) -> dict[str, str]:
    """The variables the gateway's container gets from its ConfigMap and Secret."""
    _, container = gateway(docs)
    environ: dict[str, str] = {}
    for source in container["envFrom"]:
        if "configMapRef" in source:
            environ |= named(docs, "ConfigMap", source["configMapRef"]["name"])["data"]
        else:
            environ |= secret_data(named(docs, "Secret", source["secretRef"]["name"]))
    return environ


def secret_data(secret: Doc) -> dict[str, str]:
    return {key: base64.b64decode(value).decode() for key, value in secret["data"].items()}


def test_generated_manifests_are_current() -> None:
    assert not stale(), "monitor/ changed: run `python -m deploy` and commit what it writes"


def test_prometheus_rule_is_made_from_the_alert_rules() -> None:
    rule = yaml.safe_load(prometheus_rule(ALERTS.read_text()))
    assert (rule["apiVersion"], rule["kind"]) == ("monitoring.coreos.com/v1", "PrometheusRule")
    assert rule["spec"]["groups"] == yaml.safe_load(ALERTS.read_text())["groups"]
    with pytest.raises(ValueError, match="groups"):
        prometheus_rule("groups: []\nrule_files: []\n")


def test_resources_validate_against_the_kubernetes_schemas(manifests: tuple[Doc, ...]) -> None:
    errors = []
    for doc in manifests:
        if doc["kind"] in CUSTOM_KINDS:
            continue  # test_prometheus_operator_resources
        for version in SCHEMA_VERSIONS:
            try:
                validate(doc, version, strict=True)
            except (ValidationError, SchemaNotFoundError) as exc:
                path = ".".join(str(part) for part in getattr(exc, "path", ()))
                errors.append(f"{doc['kind']} {doc['metadata']['name']} ({version}) {path}: {exc}")
    assert not errors, "\n".join(errors)


def test_what_each_target_holds() -> None:
    kinds = {
        BASE: {"ConfigMap", "Secret", "Service", "PersistentVolumeClaim", "Deployment"}
        | {"HorizontalPodAutoscaler"},
    }
    kinds[EXAMPLE] = kinds[BASE] | {"Namespace", "Job", "ServiceMonitor", "PrometheusRule"}
    for target, expected in kinds.items():
        assert {doc["kind"] for doc in render(target)} == expected, target
    example = render(EXAMPLE)
    assert named(example, "Deployment", "driftgate-redis")["spec"]["replicas"] == 1
    namespaced = [doc for doc in example if doc["kind"] != "Namespace"]
    assert {doc["metadata"].get("namespace") for doc in namespaced} == {"driftgate"}


def test_references_resolve(manifests: tuple[Doc, ...]) -> None:
    names = {
        kind: {doc["metadata"]["name"] for doc in of_kind(manifests, kind)}
        for kind in ("ConfigMap", "Secret", "PersistentVolumeClaim", "Deployment")
    }
    for where, spec in pod_specs(manifests):
        volumes = {volume["name"]: volume for volume in spec["volumes"]}
        for volume in volumes.values():
            if "persistentVolumeClaim" in volume:
                claim = volume["persistentVolumeClaim"]["claimName"]
                assert claim in names["PersistentVolumeClaim"], where
        for container in spec["containers"]:
            for mount in container.get("volumeMounts", []):
                assert mount["name"] in volumes, where
            for source in container.get("envFrom", []):
                for ref, kind in (("configMapRef", "ConfigMap"), ("secretRef", "Secret")):
                    if ref in source:
                        assert source[ref]["name"] in names[kind], where
            for variable in container.get("env", []):
                if key_ref := variable.get("valueFrom", {}).get("secretKeyRef"):
                    secret = named(manifests, "Secret", key_ref["name"])
                    assert key_ref["key"] in secret["data"], where
    # The autoscaler owns the replica count, so the Deployment leaves it out.
    (autoscaler,) = of_kind(manifests, "HorizontalPodAutoscaler")
    target = autoscaler["spec"]["scaleTargetRef"]
    assert target["kind"] == "Deployment"
    assert "replicas" not in named(manifests, "Deployment", target["name"])["spec"]
    # Each Service selects the pods of exactly one Deployment, on ports its container names.
    for service in of_kind(manifests, "Service"):
        selector = service["spec"]["selector"]
        chosen = [
            doc
            for doc in of_kind(manifests, "Deployment")
            if selector.items() <= doc["spec"]["template"]["metadata"]["labels"].items()
        ]
        assert len(chosen) == 1, service["metadata"]["name"]
        (deployment,) = chosen
        assert (
            deployment["spec"]["selector"]["matchLabels"].items()
            <= deployment["spec"]["template"]["metadata"]["labels"].items()
        )
        ports = {
            port["name"]
            for container in deployment["spec"]["template"]["spec"]["containers"]
            for port in container["ports"]
        }
        assert {port["targetPort"] for port in service["spec"]["ports"]} <= ports


def test_every_container_runs_unprivileged_on_a_read_only_root(
    manifests: tuple[Doc, ...],
) -> None:
    for where, spec in pod_specs(manifests):
        assert spec["securityContext"]["runAsNonRoot"] is True, where
        assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}, where
        assert spec["automountServiceAccountToken"] is False, where
        for container in spec["containers"]:
            context = container["securityContext"]
            assert context["readOnlyRootFilesystem"] is True, where
            assert context["allowPrivilegeEscalation"] is False, where
            assert context["capabilities"] == {"drop": ["ALL"]}, where
            for bound in ("requests", "limits"):
                assert {"cpu", "memory"} <= container["resources"][bound].keys(), where


def test_gateway_pod(manifests: tuple[Doc, ...]) -> None:
    spec, container = gateway(manifests)
    environ = gateway_environ(manifests)
    del environ["DRIFTGATE_TOKENS"]  # the base's placeholder is refused on purpose (below)
    settings = load_settings(environ)
    # The image the Dockerfile builds, as the user it creates.
    assert container["image"].partition(":")[0] == "driftgate"
    uid = re.search(r"useradd .*--uid (\d+) driftgate", (ROOT / "Dockerfile").read_text())
    assert uid is not None
    assert spec["securityContext"]["runAsUser"] == int(uid.group(1))
    # The OIP health routes, on the port the gateway binds.
    (port,) = container["ports"]
    assert (port["name"], port["containerPort"]) == ("http", settings.port)
    probes = {
        probe: (container[probe]["httpGet"]["path"], container[probe]["httpGet"]["port"])
        for probe in ("startupProbe", "livenessProbe", "readinessProbe")
    }
    assert probes == {
        "startupProbe": ("/v2/health/live", "http"),
        "livenessProbe": ("/v2/health/live", "http"),
        "readinessProbe": ("/v2/health/ready", "http"),
    }
    # The root filesystem is read-only: the data directory is the shared volume; uploads
    # (swept by process id, which only means something within a pod), /tmp and numba's
    # cache are the pod's own.
    volumes = {volume["name"]: volume for volume in spec["volumes"]}
    mounts = {mount["mountPath"]: volumes[mount["name"]] for mount in container["volumeMounts"]}
    assert "persistentVolumeClaim" in mounts[str(settings.home)]
    assert "emptyDir" in mounts[str(settings.upload_path)]
    assert "emptyDir" in mounts["/tmp"]
    numba = {variable["name"]: variable["value"] for variable in container["env"]}
    assert Path(numba["NUMBA_CACHE_DIR"]).is_relative_to("/tmp")


def test_settings_are_real_and_secrets_stay_in_the_secret(manifests: tuple[Doc, ...]) -> None:
    fields = {field.name for field in msgspec.structs.fields(Settings)}
    _, container = gateway(manifests)
    for source in container["envFrom"]:
        if "configMapRef" in source:
            keys = named(manifests, "ConfigMap", source["configMapRef"]["name"])["data"].keys()
            allowed = fields - SECRET_FIELDS
        else:
            keys = named(manifests, "Secret", source["secretRef"]["name"])["data"].keys()
            allowed = set(SECRET_FIELDS)
        for key in keys:
            # load_settings ignores a DRIFTGATE_* variable it does not know: a typo is silent.
            assert key.startswith(ENV_PREFIX), key
            assert key[len(ENV_PREFIX) :].lower() in allowed, key


def test_base_secrets_are_placeholders_the_gateway_refuses() -> None:
    with pytest.raises(ValueError, match="token entry 1"):
        load_settings(gateway_environ(render(BASE)))


def test_example_settings_load_and_reach_its_redis() -> None:
    example = render(EXAMPLE)
    settings = load_settings(gateway_environ(example))
    assert settings.tokens
    url = urlsplit(settings.redis_url)
    redis = named(example, "Service", "driftgate-redis")
    assert (url.hostname, url.port) == ("driftgate-redis", redis["spec"]["ports"][0]["port"])
    server = named(example, "Deployment", "driftgate-redis")["spec"]["template"]["spec"]
    (variable,) = server["containers"][0]["env"]
    key_ref = variable["valueFrom"]["secretKeyRef"]
    password = secret_data(named(example, "Secret", key_ref["name"]))[key_ref["key"]]
    assert url.password == password, "secrets.env and redis.env hold different passwords"


def test_prometheus_operator_resources() -> None:
    example = render(EXAMPLE)
    rule = named(example, "PrometheusRule", "driftgate")
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    groups = rule["spec"]["groups"]
    assert groups == yaml.safe_load(ALERTS.read_text())["groups"]
    assert len({group["name"] for group in groups}) == len(groups)
    for group in groups:
        assert group.keys() <= GROUP_KEYS, group["name"]
        for item in group["rules"]:
            assert item.keys() <= RULE_KEYS, item
            assert ("alert" in item) != ("record" in item), item
            assert isinstance(item["expr"], str), item
            assert DURATION.match(item.get("for", "0")), item
            for mapping in ("labels", "annotations"):
                assert all(isinstance(value, str) for value in item.get(mapping, {}).values())

    monitor = named(example, "ServiceMonitor", "driftgate")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    selector = monitor["spec"]["selector"]["matchLabels"]
    chosen = [
        doc
        for doc in of_kind(example, "Service")
        if selector.items() <= doc["metadata"]["labels"].items()
    ]
    assert [doc["metadata"]["name"] for doc in chosen] == ["driftgate"]
    ports = {port["name"] for port in chosen[0]["spec"]["ports"]}
    for endpoint in monitor["spec"]["endpoints"]:
        assert endpoint["port"] in ports
        assert endpoint["path"] == "/metrics"
        assert DURATION.match(endpoint["interval"])
        assert DURATION.match(endpoint["scrapeTimeout"])


def test_grafana_dashboard_configmap() -> None:
    dashboard = named(render(EXAMPLE), "ConfigMap", "driftgate-dashboard")
    assert dashboard["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert json.loads(dashboard["data"]["driftgate.json"]) == json.loads(DASHBOARD.read_text())
