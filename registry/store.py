"""The model registry: immutable, numbered, checksummed model versions.

The files live in a `VersionStorage` (registry/storage.py): a local directory, the default,
or an object store shared by every replica (registry/object_storage.py), with one layout:

    <name>/<version>/model.onnx      the artifact
    <name>/<version>/manifest.json   its Manifest

Reading is defensive: the files can be damaged after registration (a disk, an operator),
and one damaged version must fail alone. Reading it raises `DamagedVersionError` naming the
file; entries under the root that are not model names are skipped with a warning. An
artifact's sha256 is checked before every load, wherever it was read from.
"""

from __future__ import annotations

import getpass
import hashlib
import logging
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path

import msgspec
import polars as pl

from registry.artifact_cache import ArtifactCache
from registry.errors import (
    DamagedVersionError,
    IntegrityError,
    InvalidNameError,
    InvalidReferenceError,
    ModelNotFoundError,
)
from registry.features import bind_features, reference_inputs
from registry.manifest import DataFingerprint, Manifest, decode_manifest, encode_manifest
from registry.names import parse_version, validate_model_name
from registry.object_storage import ObjectStorage, is_object_url
from registry.profile import build_profile
from registry.quality import build_quality
from registry.signature import open_session, read_signature
from registry.storage import ARTIFACT, MANIFEST, LocalStorage, VersionStorage

_PUBLISH_ATTEMPTS = 100
_RESTORE = "restore the version's directory from a backup, or register the model again"
logger = logging.getLogger(__name__)


class ModelRegistry:
    """Registers and reads model versions in one storage."""

    def __init__(self, storage: VersionStorage | Path, *, cache: ArtifactCache | None = None):
        """`storage`: where the versions are (a path: a local directory). `cache`: local
        copies of artifacts, for a remote storage."""
        self.storage = LocalStorage(storage) if isinstance(storage, Path) else storage
        self.cache = cache

    @classmethod
    def at(cls, location: str | Path, *, endpoint: str = "", cache: Path) -> ModelRegistry:
        """The registry at a local path or an object store URL (`s3://bucket/prefix`,
        `gs://`, `az://`); a remote one keeps verified copies of its artifacts in `cache`.

        Raises:
            ValueError: a URL of no supported store, or one holding credentials.
        """
        if isinstance(location, str) and is_object_url(location):
            return cls(ObjectStorage(location, endpoint=endpoint), cache=ArtifactCache(cache))
        if isinstance(location, str) and "://" in location:
            raise ValueError(
                f"registry {location!r}: use a local path, or s3://, gs:// or az:// followed "
                "by the bucket and an optional prefix"
            )
        return cls(Path(location))

    @property
    def location(self) -> str:
        """Where the versions are, as an operator would write it."""
        return self.storage.location

    def register(
        self,
        name: str,
        model_path: Path,
        reference_path: Path,
        *,
        target: str | None = None,
        description: str = "",
        tags: Mapping[str, str] | None = None,
        metrics: Mapping[str, float] | None = None,
        owner: str = "",
        actor: str | None = None,
        sensitive: Sequence[str] = (),
    ) -> Manifest:
        """Register a new version of `name`; returns its manifest (with its new number).

        The model is loaded and run over the reference data, so a model that cannot be
        served, or data that does not fit it, is refused before anything is written.
        """
        validate_model_name(name)
        model = Path(model_path).read_bytes()
        reference = Path(reference_path)
        frame = read_reference(reference)
        session = open_session(model)
        signature = read_signature(session)
        features = bind_features(frame, signature, target)
        unknown = sorted(set(sensitive) - set(features.names))
        if unknown:
            raise InvalidReferenceError(f"sensitive feature(s) {unknown} are not features")
        inputs = reference_inputs(frame, signature, features)
        try:
            raw_outputs = session.run(None, inputs)
        except Exception as exc:  # ORT's own error types
            raise InvalidReferenceError(f"the model fails on the reference data: {exc}") from exc
        outputs = {
            spec.name: value for spec, value in zip(signature.outputs, raw_outputs, strict=True)
        }
        fingerprint = DataFingerprint(
            filename=reference.name,
            sha256=_sha256_file(reference),
            rows=frame.height,
            schema={column: str(dtype) for column, dtype in frame.schema.items()},
        )
        profile = build_profile(frame, features, inputs, outputs, signature)
        quality = (
            None
            if target is None
            else build_quality(frame.get_column(target), outputs, signature.outputs)
        )
        attempted = 0
        for _ in range(_PUBLISH_ATTEMPTS):
            latest = self.latest_version(name)
            # Past our last attempt too: an object store does not list a number claimed by a
            # registration that has not finished (or never will), yet refuses it.
            manifest = Manifest(
                name=name,
                version=max(latest, attempted) + 1,
                sha256=hashlib.sha256(model).hexdigest(),
                size_bytes=len(model),
                created_at=datetime.now(UTC),
                created_by=actor or _current_user(),
                owner=owner,
                description=description,
                tags=dict(tags or {}),
                metrics=dict(metrics or {}),
                parent_version=latest or None,
                signature=signature,
                features=features,
                sensitive=tuple(sensitive),
                target=target,
                training_data=fingerprint,
                profile=profile,
                quality=quality,
            )
            attempted = manifest.version
            if self.storage.publish(name, attempted, model, encode_manifest(manifest)):
                return manifest
        raise RuntimeError(f"could not allocate a version number for {name!r}")

    def sweep(self) -> list[str]:
        """Remove what killed registrations left (staging directories, half-written cached
        copies); returns what was removed."""
        removed = self.storage.sweep()
        return removed + (self.cache.sweep() if self.cache is not None else [])

    def check(self) -> None:
        """Return if the storage answers.

        Raises:
            StoreUnavailableError: it does not, saying why.
        """
        self.storage.check()

    def models(self) -> list[str]:
        """Names of every model with at least one version, sorted; other entries under the
        root (a copied `wine backup/`) are logged and skipped."""
        names = []
        for entry in self.storage.names():
            try:
                validate_model_name(entry)
                if self.storage.versions(entry):
                    names.append(entry)
            except (InvalidNameError, OSError) as exc:
                logger.warning("ignoring %s in the registry %s: %s", entry, self.location, exc)
        return sorted(names)

    def versions(self, name: str) -> list[int]:
        """Registered versions of `name`, ascending (empty if none), damaged ones included."""
        return sorted(self.storage.versions(validate_model_name(name)))

    def latest_version(self, name: str) -> int:
        """The highest version number of `name`, or 0 if it has none."""
        versions = self.versions(name)
        return versions[-1] if versions else 0

    def manifest(self, name: str, version: int | str | None = None) -> Manifest:
        """The manifest of one version (the latest when `version` is None).

        Raises:
            DamagedVersionError: manifest.json is missing, unreadable, or not this version's.
        """
        number = self._resolve(name, version)
        data = self._read(name, number, MANIFEST)
        try:
            manifest = decode_manifest(data)
        except (msgspec.DecodeError, ValueError, RecursionError) as exc:
            raise DamagedVersionError(
                f"{name} version {number}: {MANIFEST} is damaged ({exc}); {_RESTORE}"
            ) from exc
        if (manifest.name, manifest.version) != (name, number):
            raise DamagedVersionError(
                f"{name} version {number}: {MANIFEST} describes {manifest.name} version "
                f"{manifest.version} (a copied directory?); {_RESTORE}"
            )
        return manifest

    def load_artifact(self, name: str, version: int | str) -> tuple[Manifest, bytes]:
        """The manifest and verified ONNX bytes of a version.

        Raises:
            IntegrityError: the artifact's sha256 differs from the manifest's; it must
                never be served.
            DamagedVersionError: a file of the version is missing or unreadable.
        """
        manifest = self.manifest(name, version)
        if self.cache is not None and (model := self.cache.get(manifest.sha256)) is not None:
            return manifest, model
        model = self._read(name, manifest.version, ARTIFACT)
        digest = hashlib.sha256(model).hexdigest()
        if digest != manifest.sha256 or len(model) != manifest.size_bytes:
            raise IntegrityError(
                f"{name} version {manifest.version}: {ARTIFACT} has sha256 {digest} "
                f"({len(model)} bytes), but the manifest records {manifest.sha256} "
                f"({manifest.size_bytes} bytes); the artifact was modified and is refused; "
                f"{_RESTORE}"
            )
        if self.cache is not None:
            self.cache.put(manifest.sha256, model)
        return manifest, model

    def _read(self, name: str, version: int, filename: str) -> bytes:
        """A file of a version; messages name the version and file, never the server's path
        (they reach callers of the data plane)."""
        try:
            return self.storage.read(validate_model_name(name), version, filename)
        except FileNotFoundError as exc:
            raise DamagedVersionError(
                f"{name} version {version}: {filename} is missing; {_RESTORE}"
            ) from exc
        except OSError as exc:
            raise DamagedVersionError(
                f"{name} version {version}: {filename} cannot be read ({exc.strerror}); {_RESTORE}"
            ) from exc

    def _resolve(self, name: str, version: int | str | None) -> int:
        versions = self.versions(name)
        if not versions:
            raise ModelNotFoundError(f"model {name!r} is not registered")
        if version is None:
            return versions[-1]
        number = parse_version(version)
        if number not in versions:
            raise ModelNotFoundError(f"model {name!r} has no version {number}")
        return number


def read_reference(path: Path) -> pl.DataFrame:
    """Read reference data from Parquet or CSV (chosen by the file's suffix)."""
    suffix = path.suffix.lower()
    try:
        if suffix == ".parquet":
            return pl.read_parquet(path)
        if suffix == ".csv":
            return pl.read_csv(path, infer_schema_length=10_000)
    except (OSError, pl.exceptions.PolarsError) as exc:
        raise InvalidReferenceError(f"cannot read reference data {path}: {exc}") from exc
    raise InvalidReferenceError(f"reference data {path.name!r} must be a .parquet or .csv file")


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _current_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"
