"""Choosing the version that answers a call made without a version in its path."""

from __future__ import annotations

import asyncio

import msgspec

from gateway.errors import NotFoundError
from registry import InvalidNameError, ModelRegistry


class Route(msgspec.Struct, frozen=True):
    """The version chosen for one call and the role it plays in the deployment."""

    version: int
    role: str  # "stable" (canary splits arrive with traffic policies)


class Router:
    """Routes every unversioned call of a model to its stable version.

    The stable version is the latest one registered when the gateway first serves the
    model; registering a new version never changes what is served by itself.
    """

    def __init__(self, registry: ModelRegistry) -> None:
        self._registry = registry
        self._stable: dict[str, int] = {}

    async def route(self, name: str) -> Route:
        """The route for one call; unknown models raise `NotFoundError`."""
        version = self._stable.get(name)
        if version is None:
            version = await asyncio.to_thread(self._latest, name)
            self._stable[name] = version
        return Route(version=version, role="stable")

    def stable_versions(self) -> dict[str, int]:
        """Model name -> stable version, for every model routed so far."""
        return dict(self._stable)

    def _latest(self, name: str) -> int:
        try:
            version = self._registry.latest_version(name)
        except InvalidNameError as exc:
            raise NotFoundError(str(exc)) from exc
        if version == 0:
            raise NotFoundError(f"model {name!r} is not registered")
        return version
