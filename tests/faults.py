"""What the fault-injection tests share: a real gateway that may be killed at a chosen point
of its work (see `tests.crash`), and the checks every fault ends with.

After a fault and a restart: every acknowledged change is in the audit log (and, for a
deployment, in force), `driftgate audit --verify` passes, the state agrees with the log,
no temporary data is left, every version in the registry is whole, and the gateway serves.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Collection, Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from gateway.cli import main
from registry import ModelRegistry
from registry.deployment import Deployment
from registry.state import Change
from registry.state_embedded import EmbeddedState
from tests.conftest import ADMIN_TOKEN, TOKENS, free_port, stop_process, wait_ready

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
ROOT = Path(__file__).resolve().parent.parent
AFFINE = {"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]}]}


def command(*args: str, crash: str | None = None) -> list[str]:
    """The `driftgate` command line, killed with SIGKILL at `crash` (see `tests.crash`)."""
    if crash is None:
        return [sys.executable, "-m", "gateway", *args]
    return [sys.executable, "-m", "tests.crash", crash, "--", *args]


def environ(**extra: str) -> dict[str, str]:
    """The environment of a gateway or CLI under test (`tests` importable for crashes)."""
    return {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "DRIFTGATE_LOG_LEVEL": "warning",
        "DRIFTGATE_TOKENS": TOKENS,
        **extra,
    }


@contextlib.contextmanager
def gateway(
    home: Path, *, crash: str | None = None, **extra: str
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """`driftgate serve` on a free port, ready; yields its URL and process, stopped at the
    end if it still runs."""
    port = free_port()
    process = subprocess.Popen(
        command("serve", "--home", str(home), "--port", str(port), crash=crash),
        env=environ(**extra),
        cwd=ROOT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(url, process)
        yield url, process
    finally:
        stop_process(process)


def seed_deployments(home: Path) -> None:
    """Record every registered model's deployment (its latest version, stable), as a first
    start does, so that a gateway's own commits are only those a test asks for."""

    async def seed() -> None:
        state = EmbeddedState(home / "state")
        registry = ModelRegistry(home / "models")
        for model in registry.models():
            deployment = Deployment(model=model, stable=registry.latest_version(model), revision=1)
            await state.commit(
                Change(
                    model=model,
                    action="deployment.init",
                    actor="controller",
                    reason="seeded",
                    expected_revision=0,
                    deployment=deployment,
                    after=deployment,
                )
            )

    asyncio.run(seed())


@contextlib.contextmanager
def traffic(url: str, *, shift: float = 0.0, seed: int = 0) -> Iterator[list[int]]:
    """Affine calls from one thread, each with its own routing key, rows like the reference
    (plus `shift` on the first feature) until the block ends; yields the statuses, where a
    refused connection (a killed gateway) counts as 0."""
    statuses: list[int] = []
    stop = threading.Event()

    def send() -> None:
        rng = np.random.default_rng(seed)
        with httpx.Client(base_url=url, timeout=5) as client:
            for key in range(10**9):
                if stop.is_set():
                    return
                row = rng.normal(size=4)
                row[0] += shift
                body = {
                    "inputs": [
                        {"name": "x", "shape": [1, 4], "datatype": "FP32", "data": row.tolist()}
                    ]
                }
                try:
                    response = client.post(
                        "/v2/models/affine/infer", json=body, headers={"x-routing-key": f"u{key}"}
                    )
                    statuses.append(response.status_code)
                except httpx.TransportError:
                    statuses.append(0)
                    stop.wait(0.05)

    sender = threading.Thread(target=send)
    sender.start()
    try:
        yield statuses
    finally:
        stop.set()
        sender.join(timeout=10)


def wait_killed(process: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    """Wait for a process armed with a crash point to reach it and die of SIGKILL."""
    assert process.wait(timeout=timeout) == -signal.SIGKILL


def audit_entries(url: str) -> list[dict[str, Any]]:
    """Every audit entry, after checking that the chain verifies with `driftgate audit
    --verify` (the operators' check, over HTTP; run in this process, to save a start)."""
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        verified = main(["audit", "--verify", "--url", url, "--token", ADMIN_TOKEN])
    assert verified == 0, printed.getvalue()
    assert printed.getvalue().splitlines()[-1] == "audit chain intact", printed.getvalue()
    report = httpx.get(f"{url}/admin/audit", headers=ADMIN, timeout=10).json()
    assert report["intact"] is True, report["problem"]
    entries: list[dict[str, Any]] = report["entries"]
    assert [entry["seq"] for entry in entries] == list(range(1, len(entries) + 1))
    return entries


def leftovers(home: Path) -> list[Path]:
    """Temporary data under the data directory: files being written (`*.tmp`, a prepared
    `*.next`), registry staging directories, upload directories."""
    found = [
        path
        for path in home.rglob("*")
        if path.name.endswith((".tmp", ".next")) or path.name.startswith(".staging-")
    ]
    uploads = home / "uploads"
    return found + (list(uploads.iterdir()) if uploads.is_dir() else [])


def assert_recovered(
    home: Path,
    url: str,
    *,
    reasons: Collection[str] = (),
    versions: Collection[tuple[str, int]] = (),
) -> list[dict[str, Any]]:
    """The checks after a fault and a restart; `reasons` are those of acknowledged
    changes, `versions` the acknowledged registrations. Returns the audit entries."""
    entries = audit_entries(url)
    logged = {entry["reason"] for entry in entries}
    assert set(reasons) <= logged, sorted(set(reasons) - logged)
    registered = {
        (entry["model"], entry["after"]["version"])
        for entry in entries
        if entry["action"] == "model.register"
    }
    assert set(versions) <= registered, sorted(set(versions) - registered)
    assert leftovers(home) == []
    registry = ModelRegistry(home / "models")
    for model in registry.models():
        for version in registry.versions(model):  # whole: manifest and verified artifact
            registry.load_artifact(model, version)
        ready = httpx.get(f"{url}/v2/models/{model}/ready", timeout=10)
        assert ready.status_code == 200, ready.text
        deployment = httpx.get(f"{url}/admin/models/{model}/deployment", headers=ADMIN).json()
        # The deployment in force is the one its last entry records, neither older nor newer
        # (but for the rollout's evaluation history, which the audit holds entry by entry).
        if deployment["rollout"] is not None:
            deployment["rollout"]["history"] = []
        last = [e["after"] for e in entries if e["model"] == model and _is_deployment(e)]
        assert last, model
        assert last[-1] == deployment, (model, last[-1], deployment)
    assert set(versions) <= {(m, v) for m in registry.models() for v in registry.versions(m)}
    served = httpx.post(f"{url}/v2/models/affine/infer", json=AFFINE, timeout=10)
    assert served.status_code == 200, served.text
    return entries


def _is_deployment(entry: dict[str, Any]) -> bool:
    after = entry["after"]
    return isinstance(after, dict) and {"stable", "revision"} <= after.keys()
