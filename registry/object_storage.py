"""The registry in an object store: `s3://bucket/prefix` (AWS, MinIO, Ceph, R2), `gs://`, `az://`.

obstore (Python bindings of the Rust `object_store` crate, the one Apache Arrow, Delta Lake
and DataFusion use) speaks all three with one API, reads the standard variables of each
cloud (`AWS_ACCESS_KEY_ID`, `AWS_ENDPOINT_URL`, web identity and instance credentials, ...),
and exposes conditional writes: what a registry without a shared disk needs to hand out
version numbers, with no lock service.

A version is published in two create-only writes (`If-None-Match: *`): the artifact, then
the manifest. The artifact's write claims the number: of two registrations racing for it,
the second is refused by the store and takes the next. A version exists once its manifest
does, so a reader never sees half of one. A registration killed between the two writes
leaves an artifact without a manifest: it is never listed, and its number is not reused.
"""

from __future__ import annotations

import contextlib
import logging
import os
from datetime import timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import obstore
from obstore.exceptions import AlreadyExistsError, BaseError
from obstore.store import from_url

from registry.errors import StoreUnavailableError
from registry.storage import ARTIFACT, MANIFEST, version_number

if TYPE_CHECKING:
    from obstore.store import ClientConfig, ObjectStore, RetryConfig

logger = logging.getLogger(__name__)
SCHEMES = frozenset({"s3", "s3a", "gs", "az", "azure", "abfs", "abfss", "adl"})
# A store that does not answer must fail a load within seconds, not hang it for minutes
# (the object_store defaults): the caller gets a 503 and the version is tried again later.
CLIENT: ClientConfig = {"connect_timeout": "2s", "timeout": "30s"}
RETRY: RetryConfig = {
    "max_retries": 2,
    "retry_timeout": timedelta(seconds=10),
    "backoff": {"init_backoff": timedelta(milliseconds=100), "max_backoff": timedelta(seconds=2)},
}


def is_object_url(location: str) -> bool:
    """Whether `location` names an object store rather than a local directory."""
    return urlsplit(location).scheme in SCHEMES


class ObjectStorage:
    """Versions as objects under one bucket prefix."""

    def __init__(self, url: str, *, endpoint: str = "") -> None:
        """`endpoint`: an S3-compatible server (MinIO, Ceph, R2), or Azurite; when empty,
        the cloud's own (or `AWS_ENDPOINT_URL`)."""
        parts = urlsplit(url)
        if parts.scheme not in SCHEMES or not parts.hostname:
            raise ValueError(f"{url!r} is not an object store URL (s3://bucket/prefix)")
        if parts.username or parts.password or parts.query:
            raise ValueError(
                "put the object store's credentials in the cloud's standard variables "
                "(AWS_ACCESS_KEY_ID, ...), never in the registry URL"
            )
        self._url = url.rstrip("/")
        self._store = _open(self._url, endpoint)

    @property
    def location(self) -> str:
        return self._url

    def names(self) -> list[str]:
        listing = self._call(obstore.list_with_delimiter, self._store, None)
        return [prefix.rstrip("/") for prefix in listing["common_prefixes"]]

    def versions(self, name: str) -> list[int]:
        found = set()
        for batch in self._call(lambda: obstore.list(self._store, f"{name}/").collect()):
            number, _, filename = batch["path"].removeprefix(f"{name}/").partition("/")
            if filename == MANIFEST and (version := version_number(number)) is not None:
                found.add(version)
        return sorted(found)

    def read(self, name: str, version: int, filename: str) -> bytes:
        result = self._call(obstore.get, self._store, f"{name}/{version}/{filename}")
        data: bytes = self._call(lambda: result.bytes().to_bytes())
        return data

    def publish(self, name: str, version: int, artifact: bytes, manifest: bytes) -> bool:
        prefix = f"{name}/{version}"
        try:
            self._call(obstore.put, self._store, f"{prefix}/{ARTIFACT}", artifact, mode="create")
        except AlreadyExistsError:
            return False  # another registration claimed this number first
        try:
            self._call(obstore.put, self._store, f"{prefix}/{MANIFEST}", manifest, mode="create")
        except AlreadyExistsError:
            return False  # only by hand: the number is used, take the next
        except BaseException:
            with contextlib.suppress(Exception):  # the number stays used if this fails too
                obstore.delete(self._store, f"{prefix}/{ARTIFACT}")
            raise
        return True

    def sweep(self) -> list[str]:
        return []  # nothing is staged: an unpublished artifact is invisible and harmless

    def check(self) -> None:
        self._call(obstore.list_with_delimiter, self._store, None)

    def _call(self, operation: Any, *args: Any, **kwargs: Any) -> Any:
        """Run a store operation; an unreachable or refusing store raises
        StoreUnavailableError with the error's first line (its headline, no debug dump)."""
        try:
            return operation(*args, **kwargs)
        except (AlreadyExistsError, FileNotFoundError):
            raise
        except BaseError as exc:
            headline = str(exc).strip().splitlines()[0] if str(exc).strip() else repr(exc)
            raise StoreUnavailableError(
                f"the model store {self._url} cannot be used: {headline}"
            ) from exc


def _open(url: str, endpoint: str) -> ObjectStore:
    options: dict[str, Any] = {}
    client: ClientConfig = {**CLIENT}
    if endpoint:
        options["endpoint"] = endpoint
    if (endpoint or os.environ.get("AWS_ENDPOINT_URL", "")).startswith("http://"):
        client["allow_http"] = True  # a server on a private network (MinIO, a test)
    if urlsplit(url).scheme in {"s3", "s3a"} and os.environ.get("AWS_PROFILE"):
        options["credential_provider"] = _profile_credentials()
    store: ObjectStore = from_url(url, client_options=client, retry_config=RETRY, **options)
    return store


def _profile_credentials() -> Any:
    """Credentials of the named profile in ~/.aws/config, read by boto3 (object_store reads
    the environment and instance roles, not shared config files)."""
    try:
        from obstore.auth.boto3 import Boto3CredentialProvider
    except ImportError as exc:
        raise ValueError(
            "AWS_PROFILE names a profile of ~/.aws/config, which needs boto3: "
            "pip install 'driftgate[aws]', or set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
        ) from exc
    return Boto3CredentialProvider()
