"""Scratch directories (admin uploads of training data, merged worker metrics) do not
outlive their process: removed after use, and after a crash at the next start."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from litestar.testing import TestClient

from gateway.app import create_app
from gateway.settings import Settings
from registry import files
from tests.conftest import ADMIN_TOKEN, TOKENS

pytestmark = pytest.mark.faults
CRASH = """
import os, pathlib, signal, sys
from gateway import scratch
path = scratch.make("driftgate-upload-", pathlib.Path(sys.argv[1]))
(path / "ref.parquet").write_bytes(b"training data")
print(path, flush=True)
os.kill(os.getpid(), signal.SIGKILL)
"""


def test_uploads_leave_nothing_and_a_crash_is_swept_at_start(
    tmp_path: Path, artifacts: Path
) -> None:
    uploads = Settings(home=tmp_path).upload_path
    crashed = subprocess.run(
        [sys.executable, "-c", CRASH, str(uploads)], capture_output=True, text=True, check=False
    )
    assert crashed.returncode < 0  # killed, as a crash would
    leftover = Path(crashed.stdout.strip())
    assert (leftover / "ref.parquet").is_file()
    live = uploads / f"driftgate-upload-{os.getpid()}-running"  # a live process's upload
    live.mkdir()

    with TestClient(app=create_app(Settings(home=tmp_path, tokens=TOKENS))) as client:
        assert not leftover.exists()
        assert live.is_dir()
        live.rmdir()
        files = {
            "model": ("m.onnx", (artifacts / "affine.onnx").read_bytes()),
            "reference": ("r.parquet", (artifacts / "affine.parquet").read_bytes()),
            "target": (None, "label"),
        }
        admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
        ok = client.post("/admin/models/affine/versions", headers=admin, files=files)
        assert ok.status_code == 201, ok.text
        bad = client.post(
            "/admin/models/affine/versions",
            headers=admin,
            files={**files, "reference": ("r.parquet", b"not parquet")},
        )
        assert bad.status_code == 400
    assert list(uploads.iterdir()) == []


def test_another_hosts_leftovers_are_kept_until_a_day_old(tmp_path: Path) -> None:
    """On a volume pods share, a process id says nothing of another host's writer: its
    staging directories and temporary files are left alone until they are a day old."""
    gone = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        text=True,
        capture_output=True,
        check=True,
    ).stdout.strip()
    ours_dead = tmp_path / f".staging-{gone}.{files.HOST}-x"
    ours_live = tmp_path / f".staging-{files.owner_mark()}-y"
    theirs_fresh = tmp_path / f".staging-{os.getpid()}.0000beef-z"
    theirs_old = tmp_path / f".staging-{gone}.0000beef-w"
    for directory in (ours_dead, ours_live, theirs_fresh, theirs_old):
        directory.mkdir()
    day_ago = time.time() - files.FOREIGN_STALE_SECONDS - 60
    os.utime(theirs_old, (day_ago, day_ago))
    temporary_ours = tmp_path / f".audit.head.{gone}.{files.HOST}.tmp"
    temporary_theirs = tmp_path / f".audit.head.{gone}.0000beef.tmp"
    for path in (temporary_ours, temporary_theirs):
        path.write_bytes(b"half")

    assert sorted(files.sweep_scratch(tmp_path, ".staging-")) == sorted([ours_dead, theirs_old])
    assert files.sweep_temporary(tmp_path) == [temporary_ours]
    assert ours_live.is_dir()
    assert theirs_fresh.is_dir()
    assert temporary_theirs.is_file()
    assert files.temporary_path(tmp_path / "x").name == f".x.{files.owner_mark()}.tmp"
