"""One contract for every place the registry keeps its versions: a local directory and an S3
bucket on a real S3 API server (tests/object_store.py). Whatever the backend, versions are
numbered uniquely under concurrency, published whole, verified before every load, and a
damaged one fails alone."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

from registry import (
    DamagedVersionError,
    IntegrityError,
    Manifest,
    ModelNotFoundError,
    ModelRegistry,
    StoreUnavailableError,
)
from tests import models
from tests.object_store import BUCKET, S3Server

PREFIX = "team/registry"


@dataclass
class Backend:
    """A registry, another host's view of the same store, and the tests' hands on its files."""

    kind: str
    location: str
    open: Callable[[str], ModelRegistry]  # a replica's registry, by the replica's name
    write: Callable[[str, bytes], None]  # overwrite a file, by its key under the root

    @property
    def registry(self) -> ModelRegistry:
        return self.open("a")


@pytest.fixture(params=["local", "s3"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    if request.param == "s3":
        return _s3_backend(request.getfixturevalue("s3_server"), tmp_path)
    root = tmp_path / "models"

    def write_local(key: str, data: bytes) -> None:
        path = root / key
        path.parent.chmod(0o755)
        path.unlink(missing_ok=True)
        path.write_bytes(data)

    return Backend(
        "local",
        str(root),
        lambda replica: ModelRegistry.at(str(root), cache=tmp_path / replica / "cache"),
        write_local,
    )


@pytest.fixture
def s3_backend(s3_server: S3Server, tmp_path: Path) -> Backend:
    """What only a remote store has: a cache, partial publications, an outage."""
    return _s3_backend(s3_server, tmp_path)


def _s3_backend(server: S3Server, tmp_path: Path) -> Backend:
    url = f"s3://{BUCKET}/{PREFIX}"
    bucket = server.client()

    def write_object(key: str, data: bytes) -> None:
        bucket.put_object(Bucket=BUCKET, Key=f"{PREFIX}/{key}", Body=data)

    return Backend(
        "s3",
        url,
        lambda replica: ModelRegistry.at(
            url, endpoint=server.endpoint, cache=tmp_path / replica / "cache"
        ),
        write_object,
    )


def test_register_list_read_and_load(backend: Backend, artifacts: Path) -> None:
    registry = backend.registry
    first = registry.register(
        "affine",
        artifacts / "affine.onnx",
        artifacts / "affine.parquet",
        target="label",
        owner="risk",
        tags={"team": "risk"},
        metrics={"auc": 0.9},
    )
    second = registry.register(
        "affine", artifacts / "affine_v2.onnx", artifacts / "affine.csv", target="label"
    )
    registry.register("identity", artifacts / "identity.onnx", artifacts / "identity.parquet")

    assert registry.location == backend.location
    assert (first.version, second.version, second.parent_version) == (1, 2, 1)
    assert registry.models() == ["affine", "identity"]
    assert registry.versions("affine") == [1, 2]
    assert registry.latest_version("affine") == 2
    assert registry.manifest("affine") == second
    assert registry.manifest("affine", 1) == first
    assert first.profile is not None
    assert first.quality is not None
    assert first.training_data.sha256 == _sha256(artifacts / "affine.parquet")
    assert first.training_data.rows == 500
    manifest, model = registry.load_artifact("affine", 1)
    assert manifest == first
    assert model == (artifacts / "affine.onnx").read_bytes()
    with pytest.raises(ModelNotFoundError):
        registry.manifest("affine", 3)
    assert registry.versions("absent") == []
    registry.check()


def test_another_replica_reads_what_one_registered(backend: Backend, artifacts: Path) -> None:
    """No shared disk is needed: replica B sees and loads A's version from the store."""
    _affine(backend.open("a"), artifacts)
    other = backend.open("b")
    assert other.versions("affine") == [1]
    manifest, model = other.load_artifact("affine", 1)
    assert hashlib.sha256(model).hexdigest() == manifest.sha256


def test_racing_registrations_get_unique_numbers(
    backend: Backend, artifacts: Path, tmp_path: Path
) -> None:
    """Two hosts registering at the same moment: every version gets its own number and keeps
    its own artifact (no writer overwrote another's)."""
    offsets = [float(offset) for offset in range(8)]
    paths = [models.affine_model(tmp_path / f"m{offset}.onnx", offset=offset) for offset in offsets]
    replicas = [backend.open("a"), backend.open("b")]
    start = threading.Barrier(len(paths))

    def register(index: int) -> int:
        start.wait()
        registry = replicas[index % 2]
        return registry.register(
            "affine", paths[index], artifacts / "affine.parquet", target="label"
        ).version

    with ThreadPoolExecutor(len(paths)) as pool:
        numbers = list(pool.map(register, range(len(paths))))

    assert sorted(numbers) == list(range(1, len(paths) + 1))
    reader = backend.open("c")
    for index, number in enumerate(numbers):
        manifest, model = reader.load_artifact("affine", number)
        assert model == paths[index].read_bytes()
        assert manifest.sha256 == _sha256(paths[index])


def test_a_tampered_artifact_is_refused_and_others_load(backend: Backend, artifacts: Path) -> None:
    registry = backend.registry
    _affine(registry, artifacts)
    registry.register("identity", artifacts / "identity.onnx", artifacts / "identity.parquet")
    backend.write("affine/1/model.onnx", (artifacts / "affine_v2.onnx").read_bytes())

    with pytest.raises(IntegrityError, match=r"affine version 1: model\.onnx has sha256"):
        backend.open("fresh").load_artifact("affine", 1)
    assert backend.open("fresh").load_artifact("identity", 1)[0].name == "identity"


def test_a_damaged_manifest_fails_alone(backend: Backend, artifacts: Path) -> None:
    registry = backend.registry
    _affine(registry, artifacts)
    _affine(registry, artifacts, "affine_v2.onnx")
    backend.write("affine/1/manifest.json", b'{"name": "aff')

    with pytest.raises(DamagedVersionError, match=r"affine version 1: manifest.json is damaged"):
        registry.manifest("affine", 1)
    assert registry.load_artifact("affine", 2)[0].version == 2
    assert _affine(registry, artifacts)


def test_the_cache_is_verified_before_every_load(s3_backend: Backend, artifacts: Path) -> None:
    """A replica's copy that was altered is fetched again, never served."""
    registry = s3_backend.open("cached")
    manifest = _affine(registry, artifacts)
    registry.load_artifact("affine", 1)
    assert registry.cache is not None
    copy = registry.cache.directory / f"{manifest.sha256}.onnx"
    assert copy.read_bytes() == (artifacts / "affine.onnx").read_bytes()

    copy.write_bytes((artifacts / "affine_v2.onnx").read_bytes())
    assert registry.load_artifact("affine", 1)[1] == (artifacts / "affine.onnx").read_bytes()
    assert copy.read_bytes() == (artifacts / "affine.onnx").read_bytes()


def test_an_unfinished_registration_is_invisible_and_its_number_skipped(
    s3_backend: Backend, artifacts: Path
) -> None:
    """A registration killed after claiming number 2 (its artifact written, not its
    manifest): readers never see version 2, and the next registration takes 3. (On disk a
    version appears by one rename: tests/test_fault_kills.py.)"""
    registry = s3_backend.registry
    _affine(registry, artifacts)
    s3_backend.write("affine/2/model.onnx", (artifacts / "affine_v2.onnx").read_bytes())

    assert registry.versions("affine") == [1]
    third = _affine(registry, artifacts)
    assert third.version == 3
    assert registry.versions("affine") == [1, 3]


def test_an_unreachable_store_is_said_as_such(
    s3_backend: Backend, artifacts: Path, s3_server: S3Server
) -> None:
    registry = s3_backend.registry
    _affine(registry, artifacts)
    registry.load_artifact("affine", 1)
    s3_server.stop()

    for call in (registry.check, registry.models, lambda: registry.versions("affine")):
        with pytest.raises(StoreUnavailableError, match=f"the model store {s3_backend.location}"):
            call()
    with pytest.raises(StoreUnavailableError, match="cannot be used"):
        _affine(registry, artifacts)


def test_urls_of_no_store_are_refused(tmp_path: Path) -> None:
    for url in ("ftp://host/models", "s3://key:secret@bucket/models", "s3://"):
        with pytest.raises(ValueError, match=r"registry|object store|credentials"):
            ModelRegistry.at(url, cache=tmp_path)


def _affine(registry: ModelRegistry, artifacts: Path, model: str = "affine.onnx") -> Manifest:
    return registry.register(
        "affine", artifacts / model, artifacts / "affine.parquet", target="label"
    )


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()
