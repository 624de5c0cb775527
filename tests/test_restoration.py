"""A Redis that lost the control state is given it back by the gateways that knew it: once,
by revision, with the audit chain continued and the restoration on record."""

from __future__ import annotations

import asyncio

import msgspec
import pytest
import redis.asyncio as aioredis

from registry.audit import RESTORED, AuditHead, AuditLog, Verdict, verify_log
from registry.deployment import Canary, Deployment
from registry.restoration import plan_restoration
from registry.state import Change, StateUnavailableError
from registry.state_redis import RedisState
from tests.conftest import RedisServer
from tests.test_state_backends import set_change

pytestmark = pytest.mark.anyio
CANARY = Deployment(model="m", stable=2, canary=Canary(version=1, weight=10), revision=2)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def _started(redis_server: RedisServer, name: str) -> RedisState:
    async def ignore(_: str, __: Deployment | None) -> None:
        return None

    state = RedisState(redis_server.url, identity=name)
    await state.start(ignore)
    return state


async def _wipe(redis_server: RedisServer) -> None:
    client = aioredis.Redis.from_url(redis_server.url)
    await client.flushall()
    await client.aclose()


async def _canary_and_a_registration(state: RedisState) -> None:
    """Three entries: m first served on v2, then given v1 as a 10% canary; a registration."""
    await state.commit(set_change(Deployment(model="m", stable=2, revision=1), 0))
    await state.commit(set_change(CANARY, 1))
    await state.commit(Change(model="n", action="model.register", actor="alice"))


async def _reconnected(state: RedisState) -> dict[str, Deployment]:
    """The deployments, once the backend has reconnected to a restarted Redis."""
    deadline = asyncio.get_running_loop().time() + 5
    while True:
        try:
            return await state.deployments()
        except StateUnavailableError:  # the connections to the stopped server are dropped
            assert asyncio.get_running_loop().time() < deadline, "never reconnected"
            await asyncio.sleep(0.05)


def _restorations(log: AuditLog) -> list[int]:
    return [entry.seq for entry in log.entries if entry.action == RESTORED]


async def test_a_store_that_lost_its_state_is_restored_once(redis_server: RedisServer) -> None:
    first = await _started(redis_server, "gateway-a")
    second = await _started(redis_server, "gateway-b")
    try:
        await _canary_and_a_registration(first)
        lost = await second.audit()  # the second gateway knows the state too
        await _wipe(redis_server)
        # Both find it lost at once; exactly one restores, the other follows.
        seen = await asyncio.gather(first.deployments(), second.deployments())
        restored = Deployment(model="m", stable=2, canary=Canary(version=1, weight=10), revision=3)
        assert seen == [{"m": restored}, {"m": restored}]
        log = await second.audit()
        (entry,) = log.entries
        assert entry.action == RESTORED
        assert entry.actor == "controller"
        assert entry.model == ""
        assert entry.reason in {
            "Redis lost its state; restored from gateway gateway-a",
            "Redis lost its state; restored from gateway gateway-b",
        }
        # The chain goes on from the head the gateways knew: numbering continues.
        assert (entry.seq, entry.prev_hash) == (4, lost.entries[-1].hash)
        assert verify_log(log) == Verdict(restored_after=3)
        assert msgspec.convert(entry.after["deployments"], dict[str, Deployment]) == {"m": restored}
        await first.commit(Change(model="n", action="model.register", actor="alice"))
        log = await first.audit()
        assert [e.seq for e in log.entries] == [4, 5]
        assert verify_log(log) == Verdict(restored_after=3)
    finally:
        await first.close()
        await second.close()


async def test_defaults_written_after_the_loss_do_not_win(redis_server: RedisServer) -> None:
    first = await _started(redis_server, "gateway-a")
    try:
        await _canary_and_a_registration(first)
        await first.commit(set_change(Deployment(model="n", stable=1, revision=1), 0))
        lost = await first.audit()
        await _wipe(redis_server)
        # A gateway started after the loss, knowing nothing, writes a default first.
        late = await _started(redis_server, "gateway-c")
        try:
            await late.commit(set_change(Deployment(model="m", stable=2, revision=1), 0))
            # The first gateway hears of that write (or reads) and restores over the default:
            # the canary outranks it (revision 2 against 1). n was missing.
            deployments = await first.deployments()
            assert deployments == {
                "m": msgspec.structs.replace(CANARY, revision=3),
                "n": Deployment(model="n", stable=1, revision=2),
            }
            assert await late.deployments() == deployments
            log = await late.audit()
            assert [(e.seq, e.action) for e in log.entries] == [
                (1, "deployment.set"),
                (2, RESTORED),
            ]
            # Chained onto the entry already there, recording where the lost chain ended.
            assert log.entries[1].before["audit_head"] == {"seq": 4, "hash": lost.entries[-1].hash}
            assert verify_log(log) == Verdict()
        finally:
            await late.close()
    finally:
        await first.close()


async def test_a_stale_restoration_is_overruled_by_a_newer_gateway(
    redis_server: RedisServer,
) -> None:
    stale = RedisState(redis_server.url, identity="gateway-a")  # not listening: learns nothing
    current = await _started(redis_server, "gateway-b")
    try:
        await stale.commit(set_change(Deployment(model="m", stable=2, revision=1), 0))
        await current.commit(set_change(CANARY, 1))
        await _wipe(redis_server)
        await stale.deployments()  # restores what it knew: m without its canary
        # The newer gateway sees that (its next read, or the change notified) and puts its
        # newer policy back, at a higher revision.
        deadline = asyncio.get_running_loop().time() + 2
        while (deployments := await current.deployments())["m"].canary is None:
            assert asyncio.get_running_loop().time() < deadline, deployments
            await asyncio.sleep(0.01)
        assert deployments == {"m": msgspec.structs.replace(CANARY, revision=3)}
        assert await stale.deployments() == deployments
        log = await current.audit()
        assert [(e.seq, e.action) for e in log.entries] == [(2, RESTORED), (3, RESTORED)]
        assert verify_log(log) == Verdict(restored_after=1)
    finally:
        await stale.close()
        await current.close()


async def test_a_store_that_kept_its_state_restores_nothing(redis_server: RedisServer) -> None:
    first = await _started(redis_server, "gateway-a")
    try:
        await _canary_and_a_registration(first)
        client = aioredis.Redis.from_url(redis_server.url)
        await client.save()
        await client.aclose()
        redis_server.stop()
        redis_server.start()  # from its snapshot: the same state
        before = await _reconnected(first)
        log = await first.audit()
        assert before == {"m": CANARY}
        assert [e.seq for e in log.entries] == [1, 2, 3]
        assert _restorations(log) == []
        # A gateway started afresh finds the state it did not know and restores nothing.
        late = await _started(redis_server, "gateway-c")
        assert await late.deployments() == before
        await late.close()
        assert _restorations(await first.audit()) == []
    finally:
        await first.close()


async def test_a_store_from_before_epochs_gets_one_and_can_then_be_restored(
    redis_server: RedisServer,
) -> None:
    first = await _started(redis_server, "gateway-a")
    try:
        await _canary_and_a_registration(first)
        client = aioredis.Redis.from_url(redis_server.url)
        await client.delete("driftgate:epoch")  # as written by a gateway without epochs
        upgraded = await _started(redis_server, "gateway-b")
        try:
            assert await upgraded.deployments() == {"m": CANARY}
            assert await client.get("driftgate:epoch") is not None
            assert _restorations(await upgraded.audit()) == []
            await client.flushall()
            assert (await upgraded.deployments())["m"].canary == CANARY.canary
            assert verify_log(await upgraded.audit()) == Verdict(restored_after=3)
        finally:
            await upgraded.close()
            await client.aclose()
    finally:
        await first.close()


def test_a_plan_writes_back_only_what_the_store_lacks() -> None:
    stable = Deployment(model="s", stable=1, revision=4)
    known = {
        "m": CANARY,
        "s": stable,
        "t": Deployment(model="t", stable=1, revision=4),
        "x": Deployment(model="x", stable=1, revision=1),
    }
    stored = {
        "m": Deployment(model="m", stable=2, revision=1),  # a default: older, so replaced
        "s": stable,  # the very same: kept as it is
        # The same policy at a lower revision is lifted, else gateways that applied revision
        # 4 would ignore the next change made on the store.
        "t": Deployment(model="t", stable=1, revision=1),
        "x": Deployment(model="x", stable=2, revision=2),  # changed since: kept
    }
    head = AuditHead(seq=7, hash="a" * 64)
    plan = plan_restoration(
        known, head, stored, AuditHead(seq=3, hash="b" * 64), epochs=("e1", "e2"), gateway="g"
    )
    assert plan is not None
    assert plan.deployments == {
        "m": msgspec.structs.replace(CANARY, revision=3),
        "t": Deployment(model="t", stable=1, revision=5),
    }
    assert plan.replaces == {"m": 1, "t": 1}
    assert (plan.entry.seq, plan.entry.prev_hash) == (4, "b" * 64)
    assert plan.entry.before == {"epoch": "e1", "audit_head": {"seq": 7, "hash": "a" * 64}}
    # Nothing lacking, and a log at least as long as the chain known: nothing to write.
    assert plan_restoration(known, head, known, head, epochs=("e1", "e2"), gateway="g") is None
