"""A full data directory (a 4 MiB tmpfs, filled): a traffic change, an upload and a CLI
registration fail cleanly (507 and the reason; the CLI says it and exits 1), nothing is
half-written, the audit chain stays intact, predictions go on; once space is freed, writes
work again."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from registry import ModelRegistry
from tests.faults import (
    ADMIN,
    AFFINE,
    ROOT,
    assert_recovered,
    audit_entries,
    command,
    environ,
    gateway,
    leftovers,
)

pytestmark = [pytest.mark.faults, pytest.mark.e2e]
FULL = "No space left on device"


@pytest.fixture
def small_home(tmp_path: Path, artifacts: Path) -> Iterator[Path]:
    """A data directory on its own 4 MiB tmpfs, holding affine versions 1 and 2."""
    if os.geteuid() != 0:
        pytest.skip(f"mounting a small tmpfs needs root; the tests run as uid {os.geteuid()}")
    home = tmp_path / "home"
    home.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=4m,mode=0700", "driftgate-test", str(home)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs: {mounted.stderr.strip()}")
    try:
        registry = ModelRegistry(home / "models")
        for model in ("affine.onnx", "affine_v2.onnx"):
            registry.register(
                "affine", artifacts / model, artifacts / "affine.parquet", target="label"
            )
        yield home
    finally:
        unmounted = subprocess.run(["umount", str(home)], timeout=30, check=False)
        if unmounted.returncode != 0:
            subprocess.run(["umount", "--lazy", str(home)], timeout=30, check=True)


def _fill(directory: Path) -> Path:
    """A file that takes every free byte of the file system; returns it."""
    filler = directory / "filler"
    with filler.open("wb", buffering=0) as handle:
        for block in (1 << 16, 1 << 12, 1):
            with pytest.raises(OSError, match=FULL):  # noqa: PT012 - writes until it fails
                while True:
                    handle.write(b"\0" * block)
    return filler


def _upload(url: str, artifacts: Path, reason: str) -> httpx.Response:
    files = {
        "model": ("m.onnx", (artifacts / "affine_v2.onnx").read_bytes()),
        "reference": ("r.parquet", (artifacts / "affine.parquet").read_bytes()),
        "target": (None, "label"),
        "description": (None, reason),
    }
    return httpx.post(f"{url}/admin/models/affine/versions", headers=ADMIN, files=files, timeout=30)


def _put(url: str, stable: int, reason: str) -> httpx.Response:
    body = {"stable": stable, "reason": reason}
    return httpx.put(f"{url}/admin/models/affine/deployment", json=body, headers=ADMIN)


@pytest.mark.timeout(90)
def test_a_full_data_directory_refuses_writes_cleanly_and_recovers(
    small_home: Path, artifacts: Path
) -> None:
    home = small_home
    registry = ModelRegistry(home / "models")
    with gateway(home) as (url, _):
        assert _put(url, 1, "before the disk filled").status_code == 200
        uploaded = _upload(url, artifacts, "uploaded before the disk filled")
        assert uploaded.status_code == 201, uploaded.text
        entries = audit_entries(url)
        deployment = httpx.get(f"{url}/admin/models/affine/deployment", headers=ADMIN).json()
        versions = registry.versions("affine")

        filler = _fill(home)
        refused = [_put(url, 2, "refused"), _upload(url, artifacts, "refused")]
        for response in refused:
            assert response.status_code == 507, response.text
            assert FULL in response.json()["error"]
        cli = subprocess.run(
            command(
                *("models", "register", "affine", str(artifacts / "affine_v2.onnx")),
                *("--reference", str(artifacts / "affine.parquet"), "--target", "label"),
                *("--home", str(home)),
            ),
            env=environ(),
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert (cli.returncode, FULL in cli.stderr) == (1, True), cli.stderr
        # Nothing written: the same log (intact), deployment and versions, no leftovers.
        assert audit_entries(url) == entries
        assert httpx.get(f"{url}/admin/models/affine/deployment", headers=ADMIN).json() == (
            deployment
        )
        assert registry.versions("affine") == versions
        assert leftovers(home) == []
        for _ in range(20):
            assert httpx.post(f"{url}/v2/models/affine/infer", json=AFFINE).status_code == 200

        filler.unlink()
        assert _put(url, 2, "after space was freed").status_code == 200
        uploaded = _upload(url, artifacts, "uploaded after space was freed")
        assert uploaded.status_code == 201, uploaded.text
        assert_recovered(
            home,
            url,
            reasons=["before the disk filled", "after space was freed"],
            versions=[("affine", versions[-1]), ("affine", uploaded.json()["version"])],
        )
