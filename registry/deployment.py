"""Deployments: a model's traffic policy (stable, canary with a weight, shadows)."""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

from registry.errors import RegistryError
from registry.rollout import RolloutState

Percent = Annotated[float, msgspec.Meta(ge=0.0, le=100.0)]
Version = Annotated[int, msgspec.Meta(ge=1)]


class PolicyError(RegistryError, ValueError):
    """A policy that cannot be applied (unknown version, weight out of range); HTTP 400."""


class PolicyConflictError(RegistryError):
    """A policy at odds with the models or the current state (signature mismatch); HTTP 409."""


class Canary(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A version taking `weight` percent of the routed traffic (resolution 0.01)."""

    version: Version
    weight: Percent


class Shadow(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A version receiving a copy of `percent` percent of the requests, never answering them."""

    version: Version
    percent: Percent = 100.0


class Deployment(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The traffic policy of one model. `revision` counts changes (compare-and-set guard).

    A `protected` model changes its stable version only with a second admin's approval:
    `approval` holds the latest such change, awaiting a decision or as decided (see
    `registry.approvals`).
    """

    model: str
    stable: Version
    canary: Canary | None = None
    shadows: tuple[Shadow, ...] = ()
    rollout: RolloutState | None = None
    protected: bool = False
    approval: PendingChange | None = None
    revision: int = 0

    def routed_versions(self) -> set[int]:
        """Versions that receive traffic or copies of it (and so must be loaded)."""
        versions = {self.stable, *(shadow.version for shadow in self.shadows if shadow.percent)}
        if self.canary is not None and self.canary.weight > 0:
            versions.add(self.canary.version)
        return versions


ApprovalStatus = Literal["pending", "approved", "rejected", "expired"]


class PendingChange(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A change of a protected model's stable version, held until a second admin decides.

    Stored on the deployment it would change, so it is shared, audited and guarded by the
    same compare-and-set as the deployment itself.
    """

    id: str
    model: str
    action: str  # what was asked, e.g. "deployment.promote" or "rollout.promote"
    proposed: Deployment  # the deployment approval puts in force (its revision set then)
    requested_by: str
    reason: str = ""
    created_at: float  # seconds since the epoch
    expires_at: float
    # The deployment's revision with this request recorded: approval applies the change
    # only while the deployment is still at it (compare-and-set), else it is stale.
    revision: int
    status: ApprovalStatus = "pending"
    decided_by: str = ""
    decided_at: float = 0.0
    decision_reason: str = ""


def basis_points(percent: float) -> int:
    """A percentage at the policy's 0.01 resolution, as an integer out of 10,000."""
    points = round(percent * 100)
    if abs(points - percent * 100) > 1e-6:
        raise PolicyError(f"{percent} has more than two decimals: weights step by 0.01")
    return points


def check_policy(deployment: Deployment, known_versions: list[int]) -> None:
    """Refuse a policy naming unknown versions, repeating a version or an over-fine weight."""
    named = [deployment.stable, *(shadow.version for shadow in deployment.shadows)]
    if deployment.canary is not None:
        named.append(deployment.canary.version)
        basis_points(deployment.canary.weight)
    for shadow in deployment.shadows:
        basis_points(shadow.percent)
    unknown = sorted(set(named) - set(known_versions))
    if unknown:
        raise PolicyError(
            f"model {deployment.model!r} has no version {', '.join(map(str, unknown))} "
            f"(registered: {', '.join(map(str, known_versions)) or 'none'})"
        )
    if len(set(named)) != len(named):
        raise PolicyError("a version can play only one role: stable, canary or one shadow")


def describe(deployment: Deployment) -> str:
    """A deployment in words, e.g. `stable 1, canary 2 at 10%, shadow 3 at 50%`."""
    parts = [f"stable {deployment.stable}"]
    if (canary := deployment.canary) is not None:
        parts.append(f"canary {canary.version} at {_percent(canary.weight)}")
    parts += [f"shadow {s.version} at {_percent(s.percent)}" for s in deployment.shadows]
    if (rollout := deployment.rollout) is not None:
        parts.append(f"rollout of {rollout.version} {rollout.status}")
    if deployment.protected:
        parts.append("protected")
    if (approval := deployment.approval) is not None and approval.status == "pending":
        parts.append(f"change {approval.id} awaiting approval")
    return ", ".join(parts)


def describe_change(before: Deployment | None, after: Deployment) -> str:
    """What changed from `before` to `after`, in words, e.g. `canary 2 10% -> 25%` or
    `canary 2 promoted (stable was 1)`; with no `before`, the whole of `after`."""
    if before is None:
        return describe(after)
    parts = []
    old = before.canary
    if old is not None and after.canary is None and after.stable == old.version:
        parts.append(f"canary {old.version} promoted (stable was {before.stable})")
    else:
        if before.stable != after.stable:
            parts.append(f"stable {before.stable} -> {after.stable}")
        parts += _canary_change(old, after.canary)
    parts += _shadow_changes(before.shadows, after.shadows)
    parts += _rollout_change(before.rollout, after.rollout)
    parts += _approval_change(before, after)
    return ", ".join(parts) or "no change"


def _canary_change(before: Canary | None, after: Canary | None) -> list[str]:
    if before is None:
        return [] if after is None else [f"canary {after.version} at {_percent(after.weight)}"]
    if after is None:
        return [f"canary {before.version} removed"]
    if before.version != after.version:
        return [
            f"canary {before.version} at {_percent(before.weight)} replaced by "
            f"{after.version} at {_percent(after.weight)}"
        ]
    if before.weight != after.weight:
        return [f"canary {after.version} {_percent(before.weight)} -> {_percent(after.weight)}"]
    return []


def _shadow_changes(before: tuple[Shadow, ...], after: tuple[Shadow, ...]) -> list[str]:
    old = {shadow.version: shadow.percent for shadow in before}
    new = {shadow.version: shadow.percent for shadow in after}
    changes = []
    for version in sorted(old.keys() | new.keys()):
        if version not in new:
            changes.append(f"shadow {version} removed")
        elif version not in old:
            changes.append(f"shadow {version} at {_percent(new[version])}")
        elif old[version] != new[version]:
            changes.append(f"shadow {version} {_percent(old[version])} -> {_percent(new[version])}")
    return changes


def _rollout_change(before: RolloutState | None, after: RolloutState | None) -> list[str]:
    if after is None:
        return [] if before is None else [f"rollout of {before.version} cleared"]
    if before is None or (before.version, before.started_at) != (
        after.version,
        after.started_at,
    ):
        status = "started" if after.status == "running" else after.status
        return [f"rollout of {after.version} {status}"]
    changes = []
    if before.status != after.status:
        changes.append(f"rollout of {after.version} {before.status} -> {after.status}")
    if after.evaluations != before.evaluations and after.last is not None:
        changes.append(f"evaluation {after.evaluations} {after.last.verdict}")
    return changes


def _approval_change(before: Deployment, after: Deployment) -> list[str]:
    changes = []
    if before.protected != after.protected:
        changes.append("protected" if after.protected else "no longer protected")
    old, new = before.approval, after.approval
    if new is not None and new != old:
        if new.status == "pending":
            changes.append(f"change {new.id} ({new.action}) awaiting approval")
        else:
            changes.append(f"change {new.id} {new.status} by {new.decided_by}")
    if old is not None and old.status == "pending" and (new is None or new.id != old.id):
        changes.append(f"change {old.id} superseded")
    return changes


def _percent(value: float) -> str:
    return f"{value:g}%"
