"""The model registry: immutable, numbered, checksummed model versions on disk.

Layout under the registry root::

    <name>/<version>/model.onnx      the artifact, read-only
    <name>/<version>/manifest.json   its Manifest, read-only

A version directory is assembled under a temporary name and renamed into place, so a
version either exists whole or not at all, and two concurrent registrations can never
receive the same number (the second rename fails and takes the next one). The temporary
directory is named after its process (`.staging-<pid>-<random>`): what a killed
registration left is removed by the next registration of that model, and by `sweep`.

Reading is defensive: the files can still be damaged afterwards (a disk, an operator), and
one damaged version must fail alone. A version directory counts as a version whatever its
state, so its number is never reused, and reading it raises `DamagedVersionError` naming
the file; entries under the root that are not model names are skipped with a warning.
"""

from __future__ import annotations

import getpass
import hashlib
import logging
import os
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path

import msgspec
import polars as pl

from registry.errors import (
    DamagedVersionError,
    IntegrityError,
    InvalidNameError,
    InvalidReferenceError,
    ModelNotFoundError,
)
from registry.features import bind_features, reference_inputs
from registry.files import sweep_scratch
from registry.manifest import DataFingerprint, Manifest, decode_manifest, encode_manifest
from registry.names import parse_version, validate_model_name
from registry.profile import build_profile
from registry.quality import build_quality
from registry.signature import open_session, read_signature

ARTIFACT = "model.onnx"
MANIFEST = "manifest.json"
STAGING = ".staging-"
_RENAME_ATTEMPTS = 100
_RESTORE = "restore the version's directory from a backup, or register the model again"
logger = logging.getLogger(__name__)


class ModelRegistry:
    """Registers and reads model versions under one root directory."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

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
        model_dir = self.root / name
        model_dir.mkdir(parents=True, exist_ok=True)
        sweep_scratch(model_dir, STAGING)
        staging = Path(tempfile.mkdtemp(prefix=f"{STAGING}{os.getpid()}-", dir=model_dir))
        try:
            _write_readonly(staging / ARTIFACT, model)
            for _ in range(_RENAME_ATTEMPTS):
                latest = self.latest_version(name)
                manifest = Manifest(
                    name=name,
                    version=latest + 1,
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
                (staging / MANIFEST).unlink(missing_ok=True)
                _write_readonly(staging / MANIFEST, encode_manifest(manifest))
                try:
                    staging.rename(model_dir / str(manifest.version))
                except OSError:
                    continue  # another registration took this number first: take the next
                os.chmod(model_dir / str(manifest.version), 0o555)  # noqa: S103 - read-only
                return manifest
            raise RuntimeError(f"could not allocate a version number for {name!r}")
        finally:
            if staging.exists():
                shutil.rmtree(staging, ignore_errors=True)

    def sweep(self) -> list[Path]:
        """Remove the staging directories of registrations whose process was killed."""
        if not self.root.is_dir():
            return []
        return [
            removed
            for entry in self.root.iterdir()
            if entry.is_dir() and not entry.name.startswith(".")
            for removed in sweep_scratch(entry, STAGING)
        ]

    def models(self) -> list[str]:
        """Names of every model with at least one version, sorted; other entries under the
        root (a copied `wine backup/`) are logged and skipped."""
        if not self.root.is_dir():
            return []
        names = []
        for entry in self.root.iterdir():
            if entry.name.startswith(".") or not entry.is_dir():
                continue
            try:
                validate_model_name(entry.name)
                if self.versions(entry.name):
                    names.append(entry.name)
            except (InvalidNameError, OSError) as exc:
                logger.warning("ignoring %s in the registry: %s", entry, exc)
        return sorted(names)

    def versions(self, name: str) -> list[int]:
        """Registered versions of `name`, ascending (empty if none), damaged ones included."""
        model_dir = self.root / validate_model_name(name)
        if not model_dir.is_dir():
            return []
        return sorted(
            number
            for entry in model_dir.iterdir()
            if (number := _version_number(entry.name)) is not None and entry.is_dir()
        )

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
        model = self._read(name, manifest.version, ARTIFACT)
        digest = hashlib.sha256(model).hexdigest()
        if digest != manifest.sha256 or len(model) != manifest.size_bytes:
            raise IntegrityError(
                f"{name} version {manifest.version}: {ARTIFACT} has sha256 {digest} "
                f"({len(model)} bytes), but the manifest records {manifest.sha256} "
                f"({manifest.size_bytes} bytes); the artifact was modified and is refused; "
                f"{_RESTORE}"
            )
        return manifest, model

    def _read(self, name: str, version: int, filename: str) -> bytes:
        """A file of a version; messages name the version and file, never the server's path
        (they reach callers of the data plane)."""
        try:
            return (self._version_dir(name, version) / filename).read_bytes()
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

    def _version_dir(self, name: str, version: int) -> Path:
        return self.root / validate_model_name(name) / str(version)


def _version_number(entry: str) -> int | None:
    """The version a directory name holds in canonical form ("7", not "07" or "²")."""
    try:
        number = parse_version(entry)
    except InvalidNameError:
        return None
    return number if str(number) == entry else None


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


def _write_readonly(path: Path, data: bytes) -> None:
    with path.open("wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    path.chmod(0o444)


def _current_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"
