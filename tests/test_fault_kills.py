"""SIGKILL a real gateway or CLI in the middle of each kind of write: a model registration
(the CLI and the admin upload), a traffic split change, a rollout decision, a retraining
export. Each is killed at exact points of its work (`tests.crash`), and uploads also at a
random moment under load (traffic changes: `tests/test_audit_recovery.py`, and a Redis
leader: `tests/test_rollout_failover.py`). After each restart nothing
acknowledged is lost, the audit chain verifies, the state agrees with the log, no temporary
data is left, every version is whole, and the gateway serves (`tests.faults`)."""

from __future__ import annotations

import contextlib
import json
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import polars as pl
import pytest

from registry import ModelRegistry
from tests.faults import (
    ADMIN,
    ROOT,
    assert_recovered,
    command,
    environ,
    gateway,
    leftovers,
    seed_deployments,
    traffic,
    wait_killed,
)
from tests.test_rollouts import FAST

pytestmark = [pytest.mark.faults, pytest.mark.e2e]

# Where a registration can die (the glob names the file or directory of each step).
REGISTRATION = {
    "staging directory made, nothing written": "open:*/.staging-*/model.onnx",
    "artifact written, manifest not": "open:*/.staging-*/manifest.json",
    "both written, not renamed into place": "os.rename:*/.staging-*",
    "renamed into place, not yet read-only": "os.chmod:*/models/affine/[0-9]*",
}


def _register(home: Path, artifacts: Path, crash: str | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen(
        command(
            *("models", "register", "affine", str(artifacts / "affine_v2.onnx")),
            *("--reference", str(artifacts / "affine.parquet"), "--target", "label"),
            *("--home", str(home)),
            crash=crash,
        ),
        env=environ(),
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.mark.timeout(90)
def test_a_killed_cli_registration_leaves_a_whole_version_or_none(
    home: Path, artifacts: Path
) -> None:
    registry = ModelRegistry(home / "models")
    before = registry.versions("affine")
    # One CLI per point, side by side (registrations may run concurrently).
    killed = {point: _register(home, artifacts, crash) for point, crash in REGISTRATION.items()}
    try:
        for point, process in killed.items():
            _, err = process.communicate(timeout=60)
            assert process.returncode == -signal.SIGKILL, (point, err)
    finally:
        for process in killed.values():
            if process.poll() is None:
                process.kill()
                process.communicate(timeout=10)
    landed = registry.versions("affine")[len(before) :]
    assert landed == [before[-1] + 1]  # only the one killed after its rename
    registry.load_artifact("affine", landed[0])  # and whole

    done = _register(home, artifacts)  # the next registration cleans up after the killed
    out, err = done.communicate(timeout=60)
    assert done.returncode == 0, err
    assert f"registered affine version {landed[0] + 1} " in out
    assert leftovers(home) == []
    with gateway(home) as (url, _):
        assert_recovered(home, url)


def _upload(
    url: str, artifacts: Path, reason: str, client: httpx.Client | None = None
) -> httpx.Response:
    """Upload affine v2 again; `client` closes the connection if the gateway dies."""
    files = {
        "model": ("m.onnx", (artifacts / "affine_v2.onnx").read_bytes()),
        "reference": ("r.parquet", (artifacts / "affine.parquet").read_bytes()),
        "target": (None, "label"),
        "description": (None, reason),
    }
    post = httpx.post if client is None else client.post
    return post(f"{url}/admin/models/affine/versions", headers=ADMIN, files=files, timeout=60)


# Where an upload can die; the first upload to each gateway is acknowledged (`#2`; a first
# upload's version renamed into place, then the second's reference saved).
UPLOAD = {
    "upload half saved": "os.rename:*/.staging-* open:*/driftgate-upload-*/ref.parquet",
    "staged, not renamed into place": "os.rename:*/.staging-*#2",
    "audited, head not recorded": "tempfile.mkdtemp:*/.staging-*#2 os.rename:*/.audit.head.*",
}


@pytest.mark.timeout(120)
def test_a_killed_upload_loses_no_acknowledged_version(home: Path, artifacts: Path) -> None:
    acknowledged: list[tuple[str, int]] = []
    reasons: list[str] = []

    def upload(url: str, reason: str) -> None:
        response = _upload(url, artifacts, reason)
        if response.status_code == 201:
            acknowledged.append(("affine", response.json()["version"]))
            reasons.append(reason)

    for point, crash in UPLOAD.items():
        with gateway(home, crash=crash) as (url, process):
            assert leftovers(home) == [], f"before {point}"  # the last kill's, swept at start
            upload(url, f"acknowledged before {point}")
            with pytest.raises(httpx.TransportError), httpx.Client(timeout=60) as client:
                _upload(url, artifacts, f"killed: {point}", client)
            wait_killed(process)

    # And at a random moment, under two uploaders.
    with gateway(home) as (url, process):
        stop = threading.Event()

        def uploads(worker: int) -> None:
            for count in range(10**6):
                if stop.is_set():
                    return
                with contextlib.suppress(httpx.TransportError):
                    upload(url, f"uploader {worker}, upload {count}")

        uploaders = [threading.Thread(target=uploads, args=(w,)) for w in range(2)]
        for uploader in uploaders:
            uploader.start()
        try:
            count, deadline = len(acknowledged), time.monotonic() + 30
            while len(acknowledged) < count + 2:  # under way: kill it amid the next ones
                assert time.monotonic() < deadline, "no upload acknowledged"
                time.sleep(0.05)
            time.sleep(0.3)
            process.send_signal(signal.SIGKILL)
            process.wait(timeout=10)
        finally:
            stop.set()
            for uploader in uploaders:
                uploader.join(timeout=60)

    with gateway(home) as (url, _):
        assert_recovered(home, url, reasons=reasons, versions=acknowledged)


def _put(url: str, stable: int, reason: str, client: httpx.Client | None = None) -> httpx.Response:
    body = {"stable": stable, "canary": {"version": 3 - stable, "weight": 25}, "reason": reason}
    put = httpx.put if client is None else client.put
    return put(f"{url}/admin/models/affine/deployment", json=body, headers=ADMIN, timeout=30)


# Where a split change can die, in commit order; `#2`: the first change is acknowledged.
SPLIT = {
    "new deployments being prepared": "open:*/state/.deployments.json.*#2",
    "entry appended, head not recorded": "os.rename:*/state/.audit.head.*#2",
    "entry and head written, deployments not replaced": (
        # (the gateway's start installs the deployments the last kill left: a rename too)
        "os.rename:*/state/.audit.head.*#2 os.rename:*/state/.deployments.json.*"
    ),
}


@pytest.mark.timeout(90)
def test_a_split_change_killed_at_each_step_of_its_commit(home: Path) -> None:
    seed_deployments(home)
    reasons = []
    for point, crash in SPLIT.items():
        with gateway(home, crash=crash) as (url, process):
            assert leftovers(home) == [], f"before {point}"
            entries = assert_recovered(home, url, reasons=reasons)
            reason = f"acknowledged before {point}"
            assert _put(url, 1 + len(entries) % 2, reason).status_code == 200
            reasons.append(reason)
            with pytest.raises(httpx.TransportError), httpx.Client(timeout=30) as client:
                _put(url, 2 - len(entries) % 2, f"killed: {point}", client)
            wait_killed(process)
    with gateway(home) as (url, _):
        assert_recovered(home, url, reasons=reasons)


MONITORED = {
    "DRIFTGATE_SAMPLE_RATE": "1",
    "DRIFTGATE_DRIFT_PANE_SECONDS": "1",
    "DRIFTGATE_DRIFT_INTERVAL_SECONDS": "0.2",
}


@pytest.mark.timeout(120)
def test_the_leader_killed_while_committing_a_rollout_decision(home: Path, artifacts: Path) -> None:
    seed_deployments(home)  # affine v2 stable
    ModelRegistry(home / "models").register(  # v3: v2 again, a sound canary
        "affine", artifacts / "affine_v2.onnx", artifacts / "affine.parquet", target="label"
    )
    # Commits: the rollout's start, then its first decision, killed after its entry.
    crash = "os.rename:*/state/.deployments.json.*#2"
    with gateway(home, crash=crash, **MONITORED) as (url, process), traffic(url):
        body = {"version": 3, "config": FAST, "reason": "rollout under load"}
        started = httpx.post(f"{url}/admin/models/affine/rollout", json=body, headers=ADMIN)
        assert started.status_code == 201, started.text
        wait_killed(process)
    with gateway(home, **MONITORED) as (url, _), traffic(url, seed=1) as statuses:
        deadline = time.monotonic() + 60
        state = httpx.get(f"{url}/admin/models/affine/rollout", headers=ADMIN).json()
        while state["status"] == "running":
            assert time.monotonic() < deadline, json.dumps(state)
            time.sleep(0.2)
            state = httpx.get(f"{url}/admin/models/affine/rollout", headers=ADMIN).json()
        assert state["status"] == "promoted", json.dumps(state["last"])
        entries = assert_recovered(home, url, reasons=["rollout under load"])
        counts = [
            entry["after"]["rollout"]["evaluations"]
            for entry in entries
            if entry["action"].startswith("rollout.") and entry["actor"] == "controller"
        ]
        assert counts == list(range(1, len(counts) + 1))  # none repeated, none lost
        assert set(statuses) == {200}


@pytest.mark.timeout(120)
def test_a_retraining_export_killed_before_it_is_in_place(home: Path) -> None:
    seed_deployments(home)
    exports = home / "exports"
    with gateway(home, crash="os.rename:*/exports/*", **MONITORED) as (url, process):
        with traffic(url, shift=2.0):  # the stable version's inputs drift: export
            wait_killed(process, timeout=60)
        (half,) = exports.iterdir()
        assert half.name.endswith(".tmp")
    with gateway(home, **MONITORED) as (url, _):
        assert leftovers(home) == []
        # The killed export was never recorded, and without Redis episodes are per process:
        # this one exports again.
        with traffic(url, shift=2.0):
            deadline = time.monotonic() + 60
            while not (requested := _retraining(url)):
                assert time.monotonic() < deadline, "no retraining requested"
                time.sleep(0.5)
        export = pl.read_parquet(requested[0]["after"]["export"])
        assert export.height == requested[0]["after"]["rows"] > 0
        assert_recovered(home, url)
    assert [path.name for path in exports.iterdir()] == [Path(requested[0]["after"]["export"]).name]


def _retraining(url: str) -> list[dict[str, Any]]:
    entries = httpx.get(f"{url}/admin/audit", headers=ADMIN, timeout=10).json()["entries"]
    return [entry for entry in entries if entry["action"] == "retraining.requested"]
