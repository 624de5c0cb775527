"""Loaded model versions: verified, warmed up, created once and shared by every request.

A version that cannot be loaded (artifact tampered, truncated or deleted, manifest damaged,
a deployment naming a version that does not exist) fails alone: the failure is remembered
with its reason, its calls answer 503 with that reason, it is logged and counted (see
`failures`), and every other version goes on serving. It is tried again on the first call
after `retry_seconds`, so a restored file is picked up without a restart, while a broken
version's calls cannot make the gateway re-read and re-hash its artifact on every request.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable
from typing import NoReturn

import msgspec

from gateway.errors import NotFoundError, ServiceUnavailableError
from gateway.runtime import Runtime
from registry import Manifest, ModelNotFoundError, ModelRegistry, RegistryError

logger = logging.getLogger(__name__)
RETRY_SECONDS = 10.0


class LoadedVersion(msgspec.Struct, frozen=True):
    """A servable model version: its manifest and its runtime."""

    manifest: Manifest
    runtime: Runtime


class LoadFailure(msgspec.Struct, frozen=True):
    """Why a version cannot be served, and how often loading it has failed."""

    model: str
    version: int
    reason: str
    failures: int
    retry_at: float  # time.monotonic() of the next attempt


class ModelRepository:
    """Loads versions from the registry on first use, verifying their sha256 first."""

    def __init__(
        self,
        registry: ModelRegistry,
        build: Callable[[Manifest, bytes], Runtime],
        *,
        on_load: Callable[[Manifest], None] | None = None,
        retry_seconds: float = RETRY_SECONDS,
    ):
        """`build` makes the runtime of a verified artifact (and warms it up)."""
        self.registry = registry
        self._build = build
        self._on_load = on_load
        self._retry_seconds = retry_seconds
        self._loaded: dict[tuple[str, int], LoadedVersion] = {}
        self._loading: dict[tuple[str, int], asyncio.Lock] = {}
        self._failures: dict[tuple[str, int], LoadFailure] = {}

    def loaded(self) -> Iterable[LoadedVersion]:
        """Every version loaded so far."""
        return self._loaded.values()

    def failures(self) -> Iterable[LoadFailure]:
        """Every version whose last load failed."""
        return self._failures.values()

    async def get(self, name: str, version: int, *, routed: bool = False) -> LoadedVersion:
        """The loaded version, loading it (once, whatever the concurrency) if needed.

        `routed`: a deployment sends this version traffic, so its absence is the gateway's
        fault (503), not the caller's (404).

        Raises:
            NotFoundError: an unrouted version that is not registered.
            ServiceUnavailableError: the version cannot be served; the message says why.
        """
        key = (name, version)
        if (found := self._loaded.get(key)) is not None:
            return found
        self._raise_recent_failure(key)
        lock = self._loading.setdefault(key, asyncio.Lock())
        async with lock:
            if (found := self._loaded.get(key)) is not None:
                return found
            self._raise_recent_failure(key)  # a call we waited for has just failed
            try:
                found = await asyncio.to_thread(self._load, name, version)
            except ModelNotFoundError as exc:
                if not routed:  # the caller named a version that does not exist
                    raise NotFoundError(str(exc)) from exc
                self._fail(
                    key,
                    f"{exc}, but its deployment routes traffic to it; set the "
                    "deployment to a registered version",
                )
            except Exception as exc:  # whatever is wrong with one version, it fails alone
                if isinstance(exc, RegistryError):  # its message names the version and file
                    self._fail(key, str(exc))
                self._fail(key, f"{name} version {version} cannot be loaded: {exc!r}")
            self._failures.pop(key, None)
            if self._on_load is not None:
                self._on_load(found.manifest)
            self._loaded[key] = found
        return found

    def release(self, name: str, keep: set[int]) -> list[int]:
        """Forget the loaded versions of `name` not in `keep`; returns those released.

        Requests already running hold their own reference to the version, so its session
        lives until the last of them finishes, then is freed. Failures of versions not in
        `keep` are forgotten too: one that no deployment routes to any more (a missing
        version the operator routed away from) is no longer reported broken.
        """
        for key in [key for key in self._failures if key[0] == name and key[1] not in keep]:
            del self._failures[key]
        released = [
            version for (model, version) in self._loaded if model == name and version not in keep
        ]
        for version in released:
            del self._loaded[(name, version)]
            logger.info("unloaded %s version %d", name, version)
        return released

    def _raise_recent_failure(self, key: tuple[str, int]) -> None:
        failure = self._failures.get(key)
        if failure is not None and time.monotonic() < failure.retry_at:
            raise ServiceUnavailableError(failure.reason)

    def _fail(self, key: tuple[str, int], reason: str) -> NoReturn:
        previous = self._failures.get(key)
        self._failures[key] = LoadFailure(
            model=key[0],
            version=key[1],
            reason=reason,
            failures=(previous.failures if previous else 0) + 1,
            retry_at=time.monotonic() + self._retry_seconds,
        )
        logger.error(
            "cannot serve %s version %d (registry %s); its calls answer 503 and it is tried "
            "again in %g s: %s",
            *key,
            self.registry.location,
            self._retry_seconds,
            reason,
        )
        raise ServiceUnavailableError(reason)

    def _load(self, name: str, version: int) -> LoadedVersion:
        manifest, model = self.registry.load_artifact(name, version)
        runtime = self._build(manifest, model)
        logger.info("loaded %s version %d (sha256 %s)", name, version, manifest.sha256[:12])
        return LoadedVersion(manifest=manifest, runtime=runtime)
