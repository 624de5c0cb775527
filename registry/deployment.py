"""Deployments: a model's traffic policy (stable, canary with a weight, shadows)."""

from __future__ import annotations

from typing import Annotated

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
    """The traffic policy of one model. `revision` counts changes (compare-and-set guard)."""

    model: str
    stable: Version
    canary: Canary | None = None
    shadows: tuple[Shadow, ...] = ()
    rollout: RolloutState | None = None
    revision: int = 0

    def routed_versions(self) -> set[int]:
        """Versions that receive traffic or copies of it (and so must be loaded)."""
        versions = {self.stable, *(shadow.version for shadow in self.shadows if shadow.percent)}
        if self.canary is not None and self.canary.weight > 0:
            versions.add(self.canary.version)
        return versions


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
