"""One contract suite run against every state backend: embedded files and a real Redis."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from registry.audit import verify_log
from registry.deployment import Canary, Deployment
from registry.state import Change, RevisionConflictError, StateBackend
from registry.state_embedded import EmbeddedState
from registry.state_redis import RedisState
from tests.conftest import RedisServer
from tests.proxy import ReplyDropper

Seen = list[tuple[str, Deployment | None]]
pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(params=["embedded", "redis"])
def backend_factory(request: pytest.FixtureRequest, tmp_path: Path) -> object:
    if request.param == "embedded":
        return lambda: EmbeddedState(tmp_path / "state")
    server: RedisServer = request.getfixturevalue("redis_server")
    return lambda: RedisState(server.url)


@pytest.fixture
async def pair(backend_factory: object) -> AsyncIterator[tuple[StateBackend, StateBackend, Seen]]:
    """Two backends over the same state (as two workers), the second recording changes."""
    first, second = backend_factory(), backend_factory()  # type: ignore[operator]
    seen: Seen = []

    async def ignore(_: str, __: Deployment | None) -> None:
        return None

    async def record(model: str, deployment: Deployment | None) -> None:
        seen.append((model, deployment))

    await first.start(ignore)
    await second.start(record)
    yield first, second, seen
    await first.close()
    await second.close()


def set_change(deployment: Deployment, expected: int) -> Change:
    return Change(
        model=deployment.model,
        action="deployment.set",
        actor="alice",
        expected_revision=expected,
        deployment=deployment,
        after=deployment,
    )


async def test_commit_is_seen_by_another_worker_at_once(
    pair: tuple[StateBackend, StateBackend, Seen],
) -> None:
    first, second, seen = pair
    deployment = Deployment(model="m", stable=1, canary=Canary(version=2, weight=20), revision=1)
    started = asyncio.get_running_loop().time()
    await first.commit(set_change(deployment, 0))
    while ("m", deployment) not in seen:
        # By its notice (pub/sub, or the embedded backend's 50 ms poll), not by a resync
        # (2 s): a second leaves room for a busy machine (speed is not a unit test's call).
        assert asyncio.get_running_loop().time() - started < 1.0, "not seen within a second"
        await asyncio.sleep(0.005)
    assert (await second.deployments()) == {"m": deployment}


async def test_stale_revisions_are_refused_and_change_nothing(
    pair: tuple[StateBackend, StateBackend, Seen],
) -> None:
    first, second, _ = pair
    one = Deployment(model="m", stable=1, revision=1)
    await first.commit(set_change(one, 0))
    with pytest.raises(RevisionConflictError, match="changed meanwhile"):
        await second.commit(set_change(Deployment(model="m", stable=2, revision=1), 0))
    assert (await first.deployments())["m"] == one
    assert len((await first.audit()).entries) == 1


async def test_concurrent_writers_keep_one_unbroken_audit_chain(
    pair: tuple[StateBackend, StateBackend, Seen],
) -> None:
    first, second, _ = pair

    async def note(backend: StateBackend, index: int) -> None:
        await backend.commit(Change(model=f"m{index}", action="model.register", actor="bob"))

    await asyncio.gather(*(note(first if i % 2 else second, i) for i in range(20)))
    log = await second.audit()
    assert [entry.seq for entry in log.entries] == list(range(1, 21))
    assert verify_log(log).problem is None


async def test_state_survives_a_restart(backend_factory: object) -> None:
    backend: StateBackend = backend_factory()  # type: ignore[operator]

    async def ignore(_: str, __: Deployment | None) -> None:
        return None

    await backend.start(ignore)
    deployment = Deployment(model="m", stable=3, revision=1)
    await backend.commit(set_change(deployment, 0))
    await backend.close()
    reopened: StateBackend = backend_factory()  # type: ignore[operator]
    await reopened.start(ignore)
    assert (await reopened.deployments()) == {"m": deployment}
    assert verify_log(await reopened.audit()).problem is None
    await reopened.close()


async def test_a_crash_mid_write_leaves_the_old_deployments(tmp_path: Path) -> None:
    state = EmbeddedState(tmp_path)
    deployment = Deployment(model="m", stable=1, revision=1)
    await state.commit(set_change(deployment, 0))
    # A writer that died after writing its temporary file but before renaming it:
    (tmp_path / ".deployments.json.999.tmp").write_bytes(b'{"m": {"model": "m", "sta')
    assert await state.deployments() == {"m": deployment}


async def test_a_silent_partition_is_noticed_and_healed(redis_server: RedisServer) -> None:
    """Redis's replies stop arriving (no error: the partition is silent). The backend says
    so within seconds, and when they flow again it is healthy and has every change made
    meanwhile through another gateway."""
    proxy = ReplyDropper(redis_server.port)
    await proxy.start()
    cut = RedisState(f"redis://127.0.0.1:{proxy.port}/0")
    writer = RedisState(redis_server.url)
    seen: Seen = []

    async def record(model: str, deployment: Deployment | None) -> None:
        seen.append((model, deployment))

    async def ignore(_: str, __: Deployment | None) -> None:
        return None

    await cut.start(record)
    await writer.start(ignore)
    try:
        assert cut.healthy
        proxy.drop = True
        loop = asyncio.get_running_loop()
        started = loop.time()
        while cut.healthy:
            assert loop.time() - started < 5.0, "a silent partition went unnoticed"
            await asyncio.sleep(0.05)
        assert cut.error is not None
        deployment = Deployment(model="m", stable=1, revision=1)
        await writer.commit(set_change(deployment, 0))  # made while this gateway is cut off

        proxy.drop = False
        await proxy.reset()  # what the partition left half-read is gone with it
        started = loop.time()
        while not (cut.healthy and ("m", deployment) in seen):
            assert loop.time() - started < 5.0, "not resynced after the partition"
            await asyncio.sleep(0.05)
    finally:
        await cut.close()
        await writer.close()
        await proxy.close()
