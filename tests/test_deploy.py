"""The Kubernetes manifests under deploy/kubernetes: rendered with `kubectl kustomize`,
validated offline against the Kubernetes schemas that kubernetes-validate bundles (strict: an
unknown field fails), prometheus-operator's resources checked by structure, and the references
between resources followed (names, labels, ports, settings), which no schema sees."""

from __future__ import annotations

import base64
import functools
import json
import os
import re
import shutil
import subprocess
import tempfile
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
from registry import ModelRegistry
from registry.object_storage import is_object_url

KUSTOMIZE = ROOT / "deploy" / "kubernetes"
BASE, EXAMPLE = "base", "overlays/example"
# An overlay of the target before " + " that adds the component after it.
SHARED_VOLUME = "base + components/shared-volume"
EXAMPLE_SHARED_VOLUME = "overlays/example + components/shared-volume"
KUBECTL = shutil.which("kubectl")
CUSTOM_KINDS = frozenset({"ServiceMonitor", "PrometheusRule"})  # no bundled schema
# The oldest and the newest Kubernetes whose schemas kubernetes-validate bundles.
SCHEMA_VERSIONS = (all_versions()[0], all_versions()[-1])
WORKLOADS = frozenset({"Deployment", "Job"})
# Variables of the clouds' own that obstore reads (not settings): the keys in the Secret,
# the rest in the ConfigMap. A misspelt one is ignored as silently as a DRIFTGATE_* typo.
CLOUD_SECRETS = frozenset(
    {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"}
    | {"AZURE_STORAGE_ACCOUNT_KEY", "GOOGLE_SERVICE_ACCOUNT_KEY"}
)
CLOUD_SETTINGS = frozenset({"AWS_REGION", "AWS_DEFAULT_REGION", "AZURE_STORAGE_ACCOUNT_NAME"})
AWS_KEYS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")
# prometheus-operator's Duration (monitoring.coreos.com/v1 CRDs).
DURATION = re.compile(r"^(0|(\d+y)?(\d+w)?(\d+d)?(\d+h)?(\d+m)?(\d+s)?(\d+ms)?)$")
# What its RuleGroup and Rule accept; anything else is refused by the API server.
GROUP_KEYS = {"name", "interval", "rules", "limit", "partial_response_strategy", "query_offset"}
RULE_KEYS = {"alert", "record", "expr", "for", "keep_firing_for", "labels", "annotations"}

Doc = dict[str, Any]


def _kustomize(directory: Path) -> tuple[Doc, ...]:
    assert KUBECTL is not None
    result = subprocess.run(
        [KUBECTL, "kustomize", str(directory)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return tuple(doc for doc in yaml.safe_load_all(result.stdout) if doc)


@functools.cache
def _render(target: str) -> tuple[Doc, ...]:
    resources, _, component = target.partition(" + ")
    if not component:
        return _kustomize(KUSTOMIZE / target)
    # As a user's overlay would add it. Kustomize refuses absolute paths: relative ones.
    with tempfile.TemporaryDirectory() as overlay:
        kustomization = {
            "apiVersion": "kustomize.config.k8s.io/v1beta1",
            "kind": "Kustomization",
            "resources": [os.path.relpath(KUSTOMIZE / resources, overlay)],
            "components": [os.path.relpath(KUSTOMIZE / component, overlay)],
        }
        (Path(overlay) / "kustomization.yaml").write_text(yaml.safe_dump(kustomization))
        return _kustomize(Path(overlay))


def render(target: str) -> tuple[Doc, ...]:
    """The resources `kubectl kustomize` makes of `target`: a directory under
    deploy/kubernetes, or `DIRECTORY + COMPONENT` for an overlay adding that component."""
    if KUBECTL is None:
        pytest.skip("kubectl is not installed: it renders the manifests (kustomize)")
    return _render(target)


@pytest.fixture(params=[BASE, EXAMPLE, SHARED_VOLUME])
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
    return container_environ(docs, container)


def container_environ(
    docs: tuple[Doc, ...], container: Doc, *, secrets_only: bool = False
) -> dict[str, str]:
    """The variables `container` is given (by `envFrom` and `env`, later ones winning, as the
    kubelet does), or only those whose value comes from a Secret."""
    environ: dict[str, str] = {}
    for source in container.get("envFrom", []):
        assert "prefix" not in source, "a prefix would rename the keys obstore looks for"
        if "secretRef" in source:
            environ |= secret_data(named(docs, "Secret", source["secretRef"]["name"]))
        elif not secrets_only:
            environ |= named(docs, "ConfigMap", source["configMapRef"]["name"])["data"]
    for variable in container.get("env", []):
        if key_ref := variable.get("valueFrom", {}).get("secretKeyRef"):
            environ[variable["name"]] = secret_data(named(docs, "Secret", key_ref["name"]))[
                key_ref["key"]
            ]
        elif secrets_only:
            environ.pop(variable["name"], None)  # a literal or a ConfigMap's wins
        else:
            environ[variable["name"]] = variable.get("value", "")
    return environ


def secret_data(secret: Doc) -> dict[str, str]:
    return {key: base64.b64decode(value).decode() for key, value in secret["data"].items()}


def mounted(spec: Doc, container: Doc) -> dict[str, Doc]:
    """The volume mounted at each of the container's mount paths."""
    volumes = {volume["name"]: volume for volume in spec["volumes"]}
    return {mount["mountPath"]: volumes[mount["name"]] for mount in container["volumeMounts"]}


def job(docs: tuple[Doc, ...], name: str) -> tuple[Doc, Doc]:
    """A Job's pod spec and its one container."""
    spec = named(docs, "Job", name)["spec"]["template"]["spec"]
    (container,) = spec["containers"]
    return spec, container


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
    # No volume in the base: the registry is a bucket, the state Redis.
    kinds = {BASE: {"ConfigMap", "Secret", "Service", "Deployment", "HorizontalPodAutoscaler"}}
    kinds[SHARED_VOLUME] = kinds[BASE] | {"PersistentVolumeClaim"}
    kinds[EXAMPLE] = kinds[SHARED_VOLUME] | {
        "Namespace",
        "Job",
        "ServiceMonitor",
        "PrometheusRule",
    }
    for target, expected in kinds.items():
        assert {doc["kind"] for doc in render(target)} == expected, target
    example = render(EXAMPLE)
    workloads = {
        kind: {doc["metadata"]["name"] for doc in of_kind(example, kind)} for kind in WORKLOADS
    }
    assert workloads == {
        "Deployment": {"driftgate", "driftgate-redis", "driftgate-minio"},
        "Job": {"driftgate-minio-bucket", "driftgate-register-demo"},
    }
    claims = {doc["metadata"]["name"] for doc in of_kind(example, "PersistentVolumeClaim")}
    assert claims == {"driftgate-redis", "driftgate-minio"}
    for name in ("driftgate-redis", "driftgate-minio"):
        assert named(example, "Deployment", name)["spec"]["replicas"] == 1, name
    namespaced = [doc for doc in example if doc["kind"] != "Namespace"]
    assert {doc["metadata"].get("namespace") for doc in namespaced} == {"driftgate"}
    for target in (BASE, EXAMPLE, SHARED_VOLUME):
        for doc in render(target):
            assert doc["metadata"]["name"].startswith("driftgate"), (target, doc["kind"])


def test_references_resolve(manifests: tuple[Doc, ...]) -> None:
    names = {
        kind: {doc["metadata"]["name"] for doc in of_kind(manifests, kind)}
        for kind in ("ConfigMap", "Secret", "PersistentVolumeClaim", "Deployment")
    }
    for where, spec in pod_specs(manifests):
        volumes = {volume["name"]: volume for volume in spec["volumes"]}
        for volume in volumes.values():
            # The API server refuses two sources (a patch that adds one keeps the other).
            assert len(volume.keys() - {"name"}) == 1, (where, volume)
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
    # Each Service selects the pods of exactly one Deployment (and of no Job), on ports its
    # container names.
    for service in of_kind(manifests, "Service"):
        selector = service["spec"]["selector"]
        chosen = [
            doc
            for doc in manifests
            if doc["kind"] in WORKLOADS
            and selector.items() <= doc["spec"]["template"]["metadata"]["labels"].items()
        ]
        assert {doc["kind"] for doc in chosen} == {"Deployment"}, service["metadata"]["name"]
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
        assert spec["securityContext"].get("runAsUser") != 0, where  # the kubelet refuses it
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
    # The OIP health routes, on the port the gateway binds; gRPC on its own.
    ports = {port["name"]: port["containerPort"] for port in container["ports"]}
    assert ports == {"http": settings.port, "grpc": settings.grpc_port}
    probes = {
        probe: (container[probe]["httpGet"]["path"], container[probe]["httpGet"]["port"])
        for probe in ("startupProbe", "livenessProbe", "readinessProbe")
    }
    assert probes == {
        "startupProbe": ("/v2/health/live", "http"),
        "livenessProbe": ("/v2/health/live", "http"),
        "readinessProbe": ("/v2/health/ready", "http"),
    }
    # The root filesystem is read-only. The data directory is the pod's own when the
    # registry is a bucket, and a volume every replica mounts when it is a directory in it;
    # uploads (swept by process id, which only means something within a pod), /tmp and
    # numba's cache are always the pod's own.
    mounts = mounted(spec, container)
    if is_object_url(settings.registry_location):
        assert "emptyDir" in mounts[str(settings.home)]
    else:
        assert Path(settings.registry_location).is_relative_to(settings.home)
        claim = mounts[str(settings.home)]["persistentVolumeClaim"]["claimName"]
        assert named(manifests, "PersistentVolumeClaim", claim)["spec"]["accessModes"] == [
            "ReadWriteMany"
        ]
    assert "emptyDir" in mounts[str(settings.upload_path)]
    assert "emptyDir" in mounts["/tmp"]
    numba = {variable["name"]: variable["value"] for variable in container["env"]}
    assert Path(numba["NUMBA_CACHE_DIR"]).is_relative_to("/tmp")
    # The registry the gateway would open: a supported URL, or a path.
    registry = ModelRegistry.at(
        settings.registry_location,
        endpoint=settings.registry_endpoint,
        cache=settings.artifact_cache_path,
    )
    assert registry.location == settings.registry_location.rstrip("/")


def test_settings_are_real_and_secrets_stay_in_the_secret(manifests: tuple[Doc, ...]) -> None:
    fields = {field.name for field in msgspec.structs.fields(Settings)}
    _, container = gateway(manifests)
    for source in container["envFrom"]:
        if "configMapRef" in source:
            keys = named(manifests, "ConfigMap", source["configMapRef"]["name"])["data"].keys()
            allowed, cloud = fields - SECRET_FIELDS, CLOUD_SETTINGS
        else:
            keys = named(manifests, "Secret", source["secretRef"]["name"])["data"].keys()
            allowed, cloud = set(SECRET_FIELDS), CLOUD_SECRETS
        for key in keys:
            # load_settings ignores a DRIFTGATE_* variable it does not know: a typo is silent.
            if key.startswith(ENV_PREFIX):
                assert key[len(ENV_PREFIX) :].lower() in allowed, key
            else:
                assert key in cloud, key


@pytest.mark.parametrize("target", [BASE, EXAMPLE])
def test_gateway_gets_the_object_store_keys_from_the_secret(target: str) -> None:
    docs = render(target)
    settings = load_settings(gateway_environ(docs) | {"DRIFTGATE_TOKENS": ""})
    assert is_object_url(settings.registry_url)
    _, container = gateway(docs)
    from_secrets = container_environ(docs, container, secrets_only=True)
    assert set(AWS_KEYS) <= from_secrets.keys()
    assert all(from_secrets[key] for key in AWS_KEYS)


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


def test_example_registry_is_the_bucket_its_minio_serves() -> None:
    example = render(EXAMPLE)
    settings = load_settings(gateway_environ(example))
    registry = urlsplit(settings.registry_url)
    assert (registry.scheme, registry.path) == ("s3", "/models")
    endpoint = urlsplit(settings.registry_endpoint)
    service = named(example, "Service", "driftgate-minio")
    assert endpoint.scheme == "http"  # the server has no TLS; obstore allows http for it
    assert (endpoint.hostname, endpoint.port) == (
        "driftgate-minio",
        service["spec"]["ports"][0]["port"],
    )

    # The official image serving its data directory, on a volume of its own.
    spec = named(example, "Deployment", "driftgate-minio")["spec"]["template"]["spec"]
    (server,) = spec["containers"]
    assert server["image"].partition(":")[0] == "minio/minio"
    assert server["args"][:2] == ["server", "/data"]
    assert "persistentVolumeClaim" in mounted(spec, server)["/data"]
    # The gateway's keys are the server's root user.
    root = container_environ(example, server, secrets_only=True)
    keys = container_environ(example, gateway(example)[1], secrets_only=True)
    assert (keys["AWS_ACCESS_KEY_ID"], keys["AWS_SECRET_ACCESS_KEY"]) == (
        root["MINIO_ROOT_USER"],
        root["MINIO_ROOT_PASSWORD"],
    ), "secrets.env and minio.env hold different credentials"

    # The Job makes the registry's bucket on that server, as its root user.
    _, maker = job(example, "driftgate-minio-bucket")
    assert maker["image"].partition(":")[0] == "minio/mc"
    script = " ".join([*maker["command"], *maker["args"]])
    alias = re.search(r"mc .*alias set (\S+) (\S+) ", script)
    bucket = re.search(r"mc .*mb --ignore-existing (\S+)/(\S+)", script)
    assert alias is not None
    assert bucket is not None
    assert alias.group(1) == bucket.group(1)
    assert urlsplit(alias.group(2)) == endpoint
    assert bucket.group(2) == registry.hostname
    assert container_environ(example, maker, secrets_only=True) == root


def test_example_registers_the_demo_in_the_bucket() -> None:
    example = render(EXAMPLE)
    gateway_settings = load_settings(gateway_environ(example))
    spec, container = job(example, "driftgate-register-demo")
    assert container["command"] == ["driftgate", "models", "init-demo"]
    assert (
        spec["securityContext"]["runAsUser"] == gateway(example)[0]["securityContext"]["runAsUser"]
    )
    environ = container_environ(example, container)
    settings = load_settings(environ)
    assert (settings.registry_location, settings.registry_endpoint) == (
        gateway_settings.registry_location,
        gateway_settings.registry_endpoint,
    )
    # The bucket's keys, and no more of the gateway's secrets than that.
    assert container_environ(example, container, secrets_only=True).keys() == set(AWS_KEYS)
    assert {key: environ[key] for key in AWS_KEYS} == {
        key: gateway_environ(example)[key] for key in AWS_KEYS
    }
    # No shared volume: it trains and caches in a directory of its own.
    mounts = mounted(spec, container)
    assert "emptyDir" in mounts[str(settings.home)]
    assert not any("persistentVolumeClaim" in volume for volume in spec["volumes"])


def test_shared_volume_component_puts_the_registry_on_one_volume() -> None:
    docs = render(EXAMPLE_SHARED_VOLUME)
    checked: set[str] = set()
    for where, spec in pod_specs(docs):
        (container,) = spec["containers"]
        if container["image"].partition(":")[0] != "driftgate":
            continue  # Redis, MinIO and its bucket keep their own
        checked.add(where)
        settings = load_settings(container_environ(docs, container))
        assert settings.registry_url == "", where
        assert settings.registry_location == str(settings.home / "models"), where
        volume = mounted(spec, container)[str(settings.home)]
        assert volume["persistentVolumeClaim"]["claimName"] == "driftgate-data", where
    assert checked == {"Deployment driftgate", "Job driftgate-register-demo"}
    claim = named(docs, "PersistentVolumeClaim", "driftgate-data")
    assert claim["spec"]["accessModes"] == ["ReadWriteMany"]
    for doc in docs:
        if doc["kind"] in CUSTOM_KINDS:
            continue
        for version in SCHEMA_VERSIONS:
            validate(doc, version, strict=True)


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
