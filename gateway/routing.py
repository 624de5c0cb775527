"""Choosing the version that answers a call: sticky weighted splits and shadow draws.

A routing key (header `x-routing-key`, else the request id, else a random draw) is hashed
with the model's name into one of 10,000 buckets; the canary takes the buckets below its
weight in basis points. The same key therefore always meets the same version under the
same policy, and the canary's share of distinct keys tracks its weight.
"""

from __future__ import annotations

import msgspec

from gateway.errors import NotFoundError
from monitor.sampling import bucket
from registry.deployment import Deployment, basis_points


class Route(msgspec.Struct, frozen=True):
    """The version chosen for one call and its role in the deployment."""

    version: int
    role: str  # "stable", "canary", "shadow" or "explicit" (a version outside the policy)


class Policy(msgspec.Struct, frozen=True):
    """A deployment compiled for routing: everything per-request work needs, precomputed."""

    deployment: Deployment
    stable: Route
    canary: Route | None
    canary_points: int
    shadows: tuple[tuple[int, int], ...]  # (version, basis points of requests mirrored)

    @classmethod
    def compile(cls, deployment: Deployment) -> Policy:
        """Precompute the routes and thresholds of a deployment."""
        canary = deployment.canary
        return cls(
            deployment=deployment,
            stable=Route(deployment.stable, "stable"),
            canary=Route(canary.version, "canary") if canary else None,
            canary_points=basis_points(canary.weight) if canary else 0,
            shadows=tuple((s.version, basis_points(s.percent)) for s in deployment.shadows),
        )


class Router:
    """Routes calls by the policy of each model; policies are swapped whole, never edited."""

    def __init__(self) -> None:
        self._policies: dict[str, Policy] = {}

    def set_policy(self, deployment: Deployment) -> None:
        """Route `deployment.model` by this deployment from the next call on."""
        self._policies[deployment.model] = Policy.compile(deployment)

    def policy(self, model: str) -> Policy | None:
        """The policy in force for `model`, if any."""
        return self._policies.get(model)

    def policies(self) -> dict[str, Policy]:
        """Every policy in force, by model."""
        return dict(self._policies)

    def route(self, model: str, key: str | None) -> Route:
        """The route of an unversioned call; `key` makes it sticky."""
        policy = self._require(model)
        if policy.canary is not None and bucket(model, key) < policy.canary_points:
            return policy.canary
        return policy.stable

    def explicit(self, model: str, version: int) -> Route:
        """The route of a call naming its version: that version, in whatever role it has."""
        policy = self._require(model)
        if version == policy.stable.version:
            return policy.stable
        if policy.canary is not None and version == policy.canary.version:
            return policy.canary
        if any(version == shadow for shadow, _ in policy.shadows):
            return Route(version, "shadow")
        return Route(version, "explicit")

    def shadows(self, model: str, key: str | None) -> list[int]:
        """Shadow versions that receive a copy of this call (an independent draw each)."""
        policy = self._policies.get(model)
        if policy is None or not policy.shadows:
            return []
        return [
            version
            for version, points in policy.shadows
            if bucket(f"{model}\x00shadow{version}", key) < points
        ]

    def _require(self, model: str) -> Policy:
        policy = self._policies.get(model)
        if policy is None:
            raise NotFoundError(f"model {model!r} is not registered")
        return policy
