"""Loaded model versions: verified, warmed up, created once and shared by every request."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable

import msgspec

from gateway.errors import NotFoundError, ServiceUnavailableError
from gateway.runtime import Runtime
from registry import IntegrityError, Manifest, ModelNotFoundError, ModelRegistry, RegistryError

logger = logging.getLogger(__name__)


class LoadedVersion(msgspec.Struct, frozen=True):
    """A servable model version: its manifest and its runtime."""

    manifest: Manifest
    runtime: Runtime


class ModelRepository:
    """Loads versions from the registry on first use, verifying their sha256 first."""

    def __init__(
        self,
        registry: ModelRegistry,
        build: Callable[[Manifest, bytes], Runtime],
        *,
        on_load: Callable[[Manifest], None] | None = None,
    ):
        """`build` makes the runtime of a verified artifact (and warms it up)."""
        self.registry = registry
        self._build = build
        self._on_load = on_load
        self._loaded: dict[tuple[str, int], LoadedVersion] = {}
        self._loading: dict[tuple[str, int], asyncio.Lock] = {}

    def loaded(self) -> Iterable[LoadedVersion]:
        """Every version loaded so far."""
        return self._loaded.values()

    async def get(self, name: str, version: int) -> LoadedVersion:
        """The loaded version, loading it (once, whatever the concurrency) if needed."""
        key = (name, version)
        if (found := self._loaded.get(key)) is not None:
            return found
        lock = self._loading.setdefault(key, asyncio.Lock())
        async with lock:
            if (found := self._loaded.get(key)) is None:
                found = await asyncio.to_thread(self._load, name, version)
                if self._on_load is not None:
                    self._on_load(found.manifest)
                self._loaded[key] = found
        return found

    def release(self, name: str, keep: set[int]) -> list[int]:
        """Forget the loaded versions of `name` not in `keep`; returns those released.

        Requests already running hold their own reference to the version, so its session
        lives until the last of them finishes, then is freed.
        """
        released = [
            version for (model, version) in self._loaded if model == name and version not in keep
        ]
        for version in released:
            del self._loaded[(name, version)]
            logger.info("unloaded %s version %d", name, version)
        return released

    def _load(self, name: str, version: int) -> LoadedVersion:
        try:
            manifest, model = self.registry.load_artifact(name, version)
        except ModelNotFoundError as exc:
            raise NotFoundError(str(exc)) from exc
        except IntegrityError as exc:
            logger.error("refusing to serve %s version %d: %s", name, version, exc)
            raise ServiceUnavailableError(str(exc)) from exc
        except (RegistryError, OSError) as exc:
            raise ServiceUnavailableError(
                f"{name} version {version} cannot be loaded: {exc}"
            ) from exc
        runtime = self._build(manifest, model)
        logger.info("loaded %s version %d (sha256 %s)", name, version, manifest.sha256[:12])
        return LoadedVersion(manifest=manifest, runtime=runtime)
