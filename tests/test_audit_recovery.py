"""The audit log survives a crash at any point of a commit, and damage to any of its files:
no acknowledged entry is lost, no sequence number is given twice, the chain verifies, and
damage is reported (never a 500).

Each crash is simulated by leaving the files exactly as a process killed at that step would
leave them, then restarting on them; `test_sigkill_under_write_load` kills a real gateway
(and `tests/test_fault_kills.py` kills one at each of these steps).
"""

from __future__ import annotations

import contextlib
import os
import resource
import signal
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest
import redis
from litestar.testing import TestClient

from gateway.app import create_app
from gateway.settings import Settings
from registry.audit import AuditEntry, AuditHead, AuditLog, verify_log
from registry.deployment import Deployment
from registry.files import temporary_path
from registry.state import Change
from registry.state_embedded import EmbeddedState
from registry.state_redis import RedisState
from tests.conftest import ADMIN_TOKEN, TOKENS, RedisServer, free_port, wait_ready
from tests.faults import assert_recovered

pytestmark = [pytest.mark.anyio, pytest.mark.faults]
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def _change(revision: int) -> Change:
    """The change that takes model m from `revision` to the next."""
    deployment = Deployment(model="m", stable=1 + revision % 2, revision=revision + 1)
    return Change(
        model="m",
        action="deployment.set",
        actor="alice",
        reason=f"change {revision + 1}",
        expected_revision=revision,
        deployment=deployment,
        after=deployment,
    )


async def _ignore(_: str, __: Deployment | None) -> None:
    return None


Reopen = Callable[[Path], Awaitable[EmbeddedState]]


@pytest.fixture
async def reopen() -> AsyncIterator[Reopen]:
    """Start the embedded state on the files as they are, as a restarted process does;
    every one started is closed at the end."""
    started: list[EmbeddedState] = []

    async def start(directory: Path) -> EmbeddedState:
        state = EmbeddedState(directory)
        await state.start(_ignore)
        started.append(state)
        return state

    yield start
    for state in started:
        await state.close()


async def _commit_next(state: EmbeddedState) -> AuditEntry:
    stored = (await state.deployments()).get("m")
    return await state.commit(_change(stored.revision if stored else 0))


def _assert_sound(log: AuditLog, acknowledged: list[AuditEntry]) -> None:
    """Every acknowledged entry is there unchanged, numbers are 1..n, the chain verifies."""
    assert verify_log(log).problem is None, verify_log(log)
    assert [entry.seq for entry in log.entries] == list(range(1, len(log.entries) + 1))
    assert _ids(log.entries[: len(acknowledged)]) == _ids(acknowledged)


def _ids(entries: list[AuditEntry]) -> list[tuple[int, str]]:
    """Entries by sequence number and hash, which covers every field."""
    return [(entry.seq, entry.hash) for entry in entries]


def _line(entry: AuditEntry) -> bytes:
    return msgspec.json.encode(entry) + b"\n"


def _head(entry: AuditEntry) -> bytes:
    return msgspec.json.encode(AuditHead(seq=entry.seq, hash=entry.hash))


# How a commit's files stand when its process dies at each step: the new deployments
# prepared, appending the entry (torn at three places), after the append, inside the head's
# atomic replace (its temporary file), after replacing the head, after installing the
# deployments (never acknowledged). Each returns whether the change landed.
CRASHES: dict[str, Callable[[Path, AuditEntry, Change], bool]] = {}


def _crash(name: str) -> Callable[[Callable[[Path, AuditEntry, Change], bool]], Any]:
    def register(leave: Callable[[Path, AuditEntry, Change], bool]) -> Any:
        CRASHES[name] = leave
        return leave

    return register


def _prepare(directory: Path, entry: AuditEntry, change: Change) -> None:
    assert change.deployment is not None
    prepared = directory / f".deployments.json.{entry.hash}.next"
    prepared.write_bytes(msgspec.json.encode({"m": change.deployment}))


def _append(directory: Path, entry: AuditEntry, change: Change, data: bytes) -> None:
    _prepare(directory, entry, change)
    with (directory / "audit.jsonl").open("ab") as log:
        log.write(data)


@_crash("deployments prepared, nothing appended")
def _prepared(directory: Path, entry: AuditEntry, change: Change) -> bool:
    _prepare(directory, entry, change)
    return False


@_crash("appending, one byte written")
def _torn_first_byte(directory: Path, entry: AuditEntry, change: Change) -> bool:
    _append(directory, entry, change, _line(entry)[:1])
    return False


@_crash("appending, half the line written")
def _torn_half(directory: Path, entry: AuditEntry, change: Change) -> bool:
    _append(directory, entry, change, _line(entry)[: len(_line(entry)) // 2])
    return False


@_crash("appending, all but the newline written")
def _torn_newline(directory: Path, entry: AuditEntry, change: Change) -> bool:
    _append(directory, entry, change, _line(entry)[:-1])
    return False


@_crash("appended, head not replaced")
def _appended(directory: Path, entry: AuditEntry, change: Change) -> bool:
    _append(directory, entry, change, _line(entry))
    return True


@_crash("replacing the head, temporary file half written")
def _head_temporary(directory: Path, entry: AuditEntry, change: Change) -> bool:
    _append(directory, entry, change, _line(entry))
    (directory / ".audit.head.99999.tmp").write_bytes(_head(entry)[:10])
    return True


@_crash("head replaced, deployments not installed")
def _head_replaced(directory: Path, entry: AuditEntry, change: Change) -> bool:
    _append(directory, entry, change, _line(entry))
    (directory / "audit.head").write_bytes(_head(entry))
    return True


@_crash("deployments installed, not acknowledged")
def _all_written(directory: Path, entry: AuditEntry, change: Change) -> bool:
    _append(directory, entry, change, _line(entry))
    (directory / "audit.head").write_bytes(_head(entry))
    (directory / f".deployments.json.{entry.hash}.next").replace(directory / "deployments.json")
    return True


@pytest.mark.parametrize("acknowledged_before", [0, 3])
@pytest.mark.parametrize("crash", list(CRASHES))
async def test_a_crash_at_any_step_of_a_commit_is_recovered(
    reopen: Reopen, tmp_path: Path, crash: str, acknowledged_before: int
) -> None:
    state = await reopen(tmp_path)
    acknowledged = [await state.commit(_change(n)) for n in range(acknowledged_before)]
    log = await state.audit()
    head = AuditHead(seq=log.entries[-1].seq, hash=log.entries[-1].hash) if log.entries else None
    dying = _change(acknowledged_before)
    entry = dying.entry_after(head or AuditHead())
    landed = CRASHES[crash](tmp_path, entry, dying)

    restarted = await reopen(tmp_path)
    _assert_sound(await restarted.audit(), acknowledged)  # before any new commit, too
    # The deployments are the ones the log records: a change in the log has landed.
    stored = (await restarted.deployments()).get("m")
    assert (stored.revision if stored else 0) == acknowledged_before + landed
    assert sorted(path.name for path in tmp_path.iterdir() if path.name.startswith(".")) == []
    later = [await _commit_next(restarted) for _ in range(2)]
    log = await restarted.audit()
    _assert_sound(log, acknowledged)
    assert _ids(log.entries) == _ids([*acknowledged, *([entry] if landed else []), *later])
    assert (tmp_path / "audit.jsonl").read_bytes().endswith(b"\n")


async def test_a_garbage_head_is_reported_and_rewritten(reopen: Reopen, tmp_path: Path) -> None:
    state = await reopen(tmp_path)
    acknowledged = [await state.commit(_change(n)) for n in range(2)]
    (tmp_path / "audit.head").write_bytes(b"\x00garbage")
    verdict = verify_log(await state.audit())
    assert verdict.problem is not None
    assert f"{tmp_path / 'audit.head'} is not an audit head" in verdict.problem
    acknowledged.append(await _commit_next(state))
    _assert_sound(await state.audit(), acknowledged)


async def test_a_truncated_log_is_caught_and_no_number_is_reused(
    reopen: Reopen, tmp_path: Path
) -> None:
    state = await reopen(tmp_path)
    entries = [await state.commit(_change(n)) for n in range(4)]
    log_path = tmp_path / "audit.jsonl"
    log_path.write_bytes(b"".join(_line(entry) for entry in entries[:2]))  # the last 2 cut
    verdict = verify_log(await state.audit())
    assert (verdict.first_invalid, "removed from its end" in str(verdict.problem)) == (2, True)
    after = await state.commit(Change(model="m", action="model.register", actor="bob"))
    assert after.seq == 5  # 3 and 4 were given before; the head remembers them
    assert verify_log(await state.audit()).first_invalid == 2


async def test_an_unreadable_line_is_reported_and_the_log_goes_on(
    reopen: Reopen, tmp_path: Path
) -> None:
    state = await reopen(tmp_path)
    entries = [await state.commit(_change(n)) for n in range(4)]
    log_path = tmp_path / "audit.jsonl"
    lines = log_path.read_bytes().splitlines(keepends=True)
    lines[1] = b'{"seq": 2, "ti\n'
    lines[3] = b"\xff\xfe not an entry\n"
    log_path.write_bytes(b"".join(lines))
    log = await state.audit()
    assert _ids(log.entries) == _ids([entries[0], entries[2]])
    verdict = verify_log(log)
    assert verdict.first_invalid == 1
    assert f"line 2 of {log_path} is not a readable audit entry" in str(verdict.problem)
    after = await _commit_next(state)  # chained onto entry 3, numbered past the damaged 4
    assert (after.seq, after.prev_hash) == (5, entries[2].hash)


# Commits change 2 in a process whose files may not grow past a limit, as on a full disk.
FULL_DISK = """
import asyncio, sys
from pathlib import Path
from registry.deployment import Deployment
from registry.state import Change
from registry.state_embedded import EmbeddedState
deployment = Deployment(model="m", stable=2, revision=2)
change = Change(model="m", action="deployment.set", actor="alice", expected_revision=1,
                deployment=deployment, after=deployment)
try:
    asyncio.run(EmbeddedState(Path(sys.argv[1])).commit(change))
except Exception as exc:
    print(f"{type(exc).__name__}: {exc}")
"""


async def test_a_failed_append_leaves_the_log_as_it_was(reopen: Reopen, tmp_path: Path) -> None:
    state = await reopen(tmp_path)
    acknowledged = [await state.commit(_change(0))]
    before = (tmp_path / "audit.jsonl").read_bytes()

    def limit_file_size() -> None:  # in the child: the append stops part-way, then fails
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (len(before) + 20, resource.RLIM_INFINITY))

    done = subprocess.run(
        [sys.executable, "-c", FULL_DISK, str(tmp_path)],
        preexec_fn=limit_file_size,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
    )
    assert "StateUnavailableError: cannot write the control state" in done.stdout, done
    assert "File too large" in done.stdout
    assert (tmp_path / "audit.jsonl").read_bytes() == before
    assert (await state.deployments())["m"].revision == 1
    acknowledged.append(await _commit_next(state))
    _assert_sound(await state.audit(), acknowledged)


async def test_a_head_that_cannot_be_recorded_does_not_undo_the_commit(
    reopen: Reopen, tmp_path: Path
) -> None:
    state = await reopen(tmp_path)
    acknowledged = [await state.commit(_change(0))]
    # The head's temporary file cannot be written (here: a directory is in its way, as a
    # full disk would refuse it) after the entry is on disk: the change is made all the same.
    blocker = temporary_path(tmp_path / "audit.head")
    blocker.mkdir()
    acknowledged.append(await _commit_next(state))
    blocker.rmdir()
    assert (await state.deployments())["m"].revision == 2
    log = await state.audit()
    _assert_sound(log, acknowledged)
    assert log.head == AuditHead(seq=1, hash=acknowledged[0].hash)  # behind, and harmless
    acknowledged.append(await _commit_next(state))
    _assert_sound(await state.audit(), acknowledged)


async def test_redis_survives_a_garbage_head_and_entry(redis_server: RedisServer) -> None:
    state = RedisState(redis_server.url)
    await state.start(_ignore)
    try:
        first = await state.commit(_change(0))
        client = redis.Redis.from_url(redis_server.url)
        client.xadd("driftgate:audit", {"entry": b"\x00garbage"})
        client.set("driftgate:audit:head", b"garbage")
        client.close()
        verdict = verify_log(await state.audit())
        assert verdict.first_invalid == 1
        assert "of stream driftgate:audit is not a readable audit entry" in str(verdict.problem)
        after = await state.commit(Change(model="m", action="model.register", actor="bob"))
        assert (after.seq, after.prev_hash) == (3, first.hash)
        log = await state.audit()
        assert log.head == AuditHead(seq=3, hash=after.hash)
    finally:
        await state.close()


def test_admin_api_survives_a_garbage_head_and_a_damaged_log(settings: Settings) -> None:
    with TestClient(app=create_app(settings)) as client:
        body = {"stable": 1, "reason": "first"}
        assert client.put("/admin/models/affine/deployment", json=body, headers=ADMIN).is_success
        state = settings.state_path
        (state / "audit.head").write_bytes(b"{not a head")
        report = client.get("/admin/audit", headers=ADMIN).json()
        assert (report["intact"], report["first_invalid"]) == (False, None)
        assert "audit.head is not an audit head" in report["problem"]
        body = {"stable": 2, "reason": "second"}
        written = client.put("/admin/models/affine/deployment", json=body, headers=ADMIN)
        assert written.status_code == 200, written.text
        assert client.get("/admin/audit", headers=ADMIN).json()["intact"] is True

        log = state / "audit.jsonl"
        lines = log.read_bytes().splitlines(keepends=True)
        log.write_bytes(b"".join([lines[0], b"garbage\n", *lines[2:]]))
        report = client.get("/admin/audit", headers=ADMIN)
        assert report.status_code == 200, report.text
        assert (report.json()["intact"], report.json()["first_invalid"]) == (False, 1)
        assert f"line 2 of {log} is not a readable audit entry" in report.json()["problem"]
        body = {"stable": 1, "reason": "third"}
        assert client.put("/admin/models/affine/deployment", json=body, headers=ADMIN).is_success


@contextlib.contextmanager
def _gateway(home: Path, port: int) -> Iterator[subprocess.Popen[bytes]]:
    process = subprocess.Popen(
        [sys.executable, "-m", "gateway", "serve", "--home", str(home), "--port", str(port)],
        env={**os.environ, "DRIFTGATE_LOG_LEVEL": "error", "DRIFTGATE_TOKENS": TOKENS},
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_ready(f"http://127.0.0.1:{port}", process)
        yield process
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=10)


@pytest.mark.e2e
@pytest.mark.timeout(90)
def test_sigkill_under_write_load_loses_no_acknowledged_change(home: Path) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    acknowledged: list[str] = []
    lock = threading.Lock()

    def write(worker: int, stop: threading.Event) -> None:
        with httpx.Client(base_url=url, headers=ADMIN, timeout=5) as client:
            for count in range(10**6):
                if stop.is_set():
                    return
                reason = f"worker {worker} change {count}"
                body = {"stable": 1 + count % 2, "reason": reason}
                with contextlib.suppress(httpx.HTTPError):
                    if client.put("/admin/models/affine/deployment", json=body).is_success:
                        with lock:
                            acknowledged.append(reason)

    for kill in range(3):
        with _gateway(home, port) as process:
            stop = threading.Event()
            writers = [threading.Thread(target=write, args=(w, stop)) for w in range(4)]
            for writer in writers:
                writer.start()
            time.sleep(1.0 + 0.3 * kill)  # kills land at different points of the commits
            process.send_signal(signal.SIGKILL)
            process.wait(timeout=10)
            stop.set()
            for writer in writers:
                writer.join()
    assert len(acknowledged) > 10

    with _gateway(home, port):
        report = httpx.get(f"{url}/admin/audit", headers=ADMIN, timeout=10).json()
        assert report["intact"] is True, report["problem"]
        seqs = [entry["seq"] for entry in report["entries"]]
        assert seqs == list(range(1, len(seqs) + 1))
        logged = {entry["reason"] for entry in report["entries"]}
        assert set(acknowledged) <= logged
        verify = subprocess.run(
            [sys.executable, "-m", "gateway", "audit", "--verify", "--url", url],
            env={**os.environ, "DRIFTGATE_TOKEN": ADMIN_TOKEN},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert verify.returncode == 0, verify.stdout + verify.stderr
        assert "audit chain intact" in verify.stdout
        # The deployment in force is the last one logged; no temporary file is left.
        assert_recovered(home, url, reasons=acknowledged)
