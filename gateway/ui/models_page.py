"""The console's models page: every model's traffic policy, and each version's provenance
and drift."""

from __future__ import annotations

import asyncio
import time
from typing import Literal

import msgspec

from gateway.deployments import DeploymentManager
from gateway.ui import words
from gateway.ui.pending_page import PendingView, pending_views
from monitor.detector import Status, worst
from monitor.drift import DriftMonitor
from registry import Manifest, ModelRegistry, RegistryError
from registry.deployment import Deployment
from registry.rollout import RolloutStatus

# A version's drift in a word: a report's status, or why there is none.
DriftWord = Status | Literal["not monitored", "not evaluated yet"]
Role = Literal["stable", "canary", "shadow", ""]


class VersionSummary(msgspec.Struct, frozen=True, kw_only=True):
    """One version of a model, as the models page lists it."""

    # Identity and its part in the deployment.
    version: int
    role: Role  # "" for a version that takes no traffic
    traffic: str  # its share in words: "75%", "canary 25%", "shadow 50%", ""
    in_rollout: bool  # a rollout of this version is running or paused
    # Provenance, from the manifest ("" where a damaged version's manifest is unreadable).
    owner: str
    created: str  # "2024-05-01 12:00:05 UTC"
    created_by: str
    description: str
    sha256: str
    sha256_short: str  # the first 12 hex digits
    training_data: str  # the reference file's name
    training_data_short: str  # the first 12 hex digits of its sha256
    training_rows: int
    # Drift, from the latest evaluation.
    drift: DriftWord
    drift_class: str  # "status-ok", "status-warn", "status-drift", ..., "status-none"
    damaged: str  # why the version cannot be read, "" when it can


class RolloutSummary(msgspec.Struct, frozen=True, kw_only=True):
    """A model's rollout in one line."""

    version: int
    status: RolloutStatus
    status_class: str  # "status-ok" (promoted), "status-warn" (running, paused), ...
    weight: str  # the canary's weight now, "25%"
    step: str  # "2 of 3"


class ModelSummary(msgspec.Struct, frozen=True, kw_only=True):
    """One model: its traffic policy and every version."""

    # The traffic policy in force (None: not deployed yet, which its first call does).
    name: str
    stable: int | None
    canary: str  # "v3 at 25%", or "none"
    canary_version: int | None
    canary_weight: float | None
    shadows: tuple[str, ...]  # "v4 at 50%"
    revision: int
    rollout: RolloutSummary | None
    # A protected model changes its stable version only with a second admin's approval.
    protected: bool
    pending: PendingView | None  # the change awaiting that approval
    # The worst drift among the versions that take traffic.
    drift: DriftWord
    drift_class: str
    versions: tuple[VersionSummary, ...]  # newest first


class ModelsView(msgspec.Struct, frozen=True, kw_only=True):
    """The models page: every registered model, by name."""

    models: tuple[ModelSummary, ...]
    generated: str  # when the view was built, "2024-05-01 12:00:05 UTC"


async def models_view(manager: DeploymentManager, monitor: DriftMonitor) -> ModelsView:
    """Every registered model with its deployment and versions (the registry is read in
    a worker thread: it may be an object store)."""
    registry = manager.registry
    pending = await pending_views(manager)  # first: it records the expiries that are due
    deployments = manager.deployments()
    names = await asyncio.to_thread(registry.models)
    models = []
    for name in names:
        loaded = {}
        for version in await asyncio.to_thread(registry.versions, name):
            watch = monitor.window(name, version)
            loaded[version] = watch.manifest if watch is not None else None
        manifests = await asyncio.to_thread(_manifests, registry, name, loaded)
        models.append(_model(name, deployments.get(name), manifests, monitor, pending.get(name)))
    return ModelsView(models=tuple(models), generated=words.moment(time.time()))


def drift_word(monitor: DriftMonitor, model: str, version: int) -> DriftWord:
    """A version's drift status from its latest evaluation, or why there is none."""
    if monitor.window(model, version) is None:
        return "not monitored"
    report = monitor.report(model, version)
    return "not evaluated yet" if report is None else report.status


def _manifests(
    registry: ModelRegistry, name: str, loaded: dict[int, Manifest | None]
) -> dict[int, Manifest | str]:
    """Each version's manifest (the monitor's copy where loaded), or why it is unreadable."""
    found: dict[int, Manifest | str] = {}
    for version, manifest in loaded.items():
        try:
            found[version] = manifest or registry.manifest(name, version)
        except RegistryError as exc:
            found[version] = str(exc)
    return found


def _model(
    name: str,
    deployment: Deployment | None,
    manifests: dict[int, Manifest | str],
    monitor: DriftMonitor,
    pending: PendingView | None,
) -> ModelSummary:
    roles = _roles(deployment)
    rollout = deployment.rollout if deployment else None
    active = rollout is not None and rollout.status in ("running", "paused")
    versions = tuple(
        _version(
            name,
            version,
            manifest,
            roles.get(version, ("", "")),
            in_rollout=active and rollout is not None and rollout.version == version,
            monitor=monitor,
        )
        for version, manifest in sorted(manifests.items(), reverse=True)
    )
    reports = [monitor.report(name, v.version) for v in versions if v.role]
    statuses = [report.status for report in reports if report is not None]
    drift: DriftWord = (
        worst(statuses)
        if statuses
        else next((v.drift for v in versions if v.role == "stable"), "not monitored")
    )
    canary = deployment.canary if deployment else None
    return ModelSummary(
        name=name,
        stable=deployment.stable if deployment else None,
        canary=f"v{canary.version} at {words.percent(canary.weight)}" if canary else "none",
        canary_version=canary.version if canary else None,
        canary_weight=canary.weight if canary else None,
        shadows=tuple(
            f"v{s.version} at {words.percent(s.percent)}"
            for s in (deployment.shadows if deployment else ())
        ),
        revision=deployment.revision if deployment else 0,
        rollout=_rollout(deployment) if deployment and deployment.rollout else None,
        protected=deployment.protected if deployment else False,
        pending=pending,
        drift=drift,
        drift_class=words.status_class(drift),
        versions=versions,
    )


def _roles(deployment: Deployment | None) -> dict[int, tuple[Role, str]]:
    """Each routed version's role and its traffic in words."""
    if deployment is None:
        return {}
    canary = deployment.canary
    stable_share = 100.0 - (canary.weight if canary else 0.0)
    roles: dict[int, tuple[Role, str]] = {
        deployment.stable: ("stable", words.percent(stable_share))
    }
    if canary is not None:
        roles[canary.version] = ("canary", f"canary {words.percent(canary.weight)}")
    for shadow in deployment.shadows:
        roles[shadow.version] = ("shadow", f"shadow {words.percent(shadow.percent)}")
    return roles


def _version(
    model: str,
    version: int,
    manifest: Manifest | str,
    role: tuple[Role, str],
    *,
    in_rollout: bool,
    monitor: DriftMonitor,
) -> VersionSummary:
    drift = drift_word(monitor, model, version)
    damaged = manifest if isinstance(manifest, str) else ""
    readable = None if isinstance(manifest, str) else manifest
    data = readable.training_data if readable else None
    return VersionSummary(
        version=version,
        role=role[0],
        traffic=role[1],
        in_rollout=in_rollout,
        owner=readable.owner if readable else "",
        created=words.date(readable.created_at) if readable else "",
        created_by=readable.created_by if readable else "",
        description=readable.description if readable else "",
        sha256=readable.sha256 if readable else "",
        sha256_short=words.short_hash(readable.sha256) if readable else "",
        training_data=data.filename if data else "",
        training_data_short=words.short_hash(data.sha256) if data else "",
        training_rows=data.rows if data else 0,
        drift=drift,
        drift_class=words.status_class(drift),
        damaged=damaged,
    )


def _rollout(deployment: Deployment) -> RolloutSummary:
    rollout = deployment.rollout
    assert rollout is not None
    return RolloutSummary(
        version=rollout.version,
        status=rollout.status,
        status_class=words.rollout_class(rollout.status),
        weight=words.percent(canary_weight(deployment)),
        step=f"{rollout.step + 1} of {len(rollout.config.steps)}",
    )


def canary_weight(deployment: Deployment) -> float:
    """The weight the rollout's version takes now: its canary weight, 100 once promoted."""
    rollout, canary = deployment.rollout, deployment.canary
    if rollout is not None and rollout.status == "promoted":
        return 100.0
    if canary is not None and rollout is not None and canary.version == rollout.version:
        return canary.weight
    return 0.0
