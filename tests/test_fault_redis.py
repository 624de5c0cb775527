"""Redis stopped under traffic and restarted with its data, then changing to a password the
gateway does not have. Serving goes on from the last known policy all along; writes are
refused with a 503 that says why while Redis cannot be used, and write nothing (not even a
model version); once Redis is back every acknowledged change is there and writes work.
(Redis restarted empty is `tests/test_restoration.py`'s.)"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
import redis

from registry import ModelRegistry
from tests.conftest import RedisServer
from tests.faults import ADMIN, AFFINE, assert_recovered, gateway, traffic

pytestmark = [pytest.mark.faults, pytest.mark.e2e]


def _stop_saving(server: RedisServer) -> None:
    """Stop Redis as an operator does, its data saved to its directory (`dump.rdb`), which
    the next start loads."""
    client = redis.Redis.from_url(server.url)
    with contextlib.suppress(redis.ConnectionError):
        client.shutdown(save=True)
    client.close()
    server.stop()


def _wait(url: str, healthy: bool) -> None:
    deadline = time.monotonic() + 15
    while (
        httpx.get(f"{url}/admin/status", headers=ADMIN).json()["state_backend"]["healthy"]
        is not healthy
    ):
        assert time.monotonic() < deadline, f"state backend never {'up' if healthy else 'down'}"
        time.sleep(0.05)


def _assert_writes_refused(url: str, home: Path, artifacts: Path, why: str) -> None:
    """A traffic change, a rollout and an upload: 503 naming the cause, nothing written."""
    versions = ModelRegistry(home / "models").versions("affine")
    writes: list[Callable[[], httpx.Response]] = [
        lambda: httpx.put(
            f"{url}/admin/models/affine/deployment", json={"stable": 1}, headers=ADMIN
        ),
        lambda: httpx.post(
            f"{url}/admin/models/affine/rollout", json={"version": 1}, headers=ADMIN
        ),
        lambda: httpx.post(
            f"{url}/admin/models/affine/versions",
            headers=ADMIN,
            files={
                "model": ("m.onnx", (artifacts / "affine.onnx").read_bytes()),
                "reference": ("r.parquet", (artifacts / "affine.parquet").read_bytes()),
                "target": (None, "label"),
            },
            timeout=30,
        ),
    ]
    for write in writes:
        refused = write()
        assert refused.status_code == 503, refused.text
        assert why in refused.json()["error"]
    assert ModelRegistry(home / "models").versions("affine") == versions


def _served_versions(url: str) -> set[str]:
    """The versions that 40 users (routing keys) are served."""
    return {
        httpx.post(
            f"{url}/v2/models/affine/infer", json=AFFINE, headers={"x-routing-key": f"user{key}"}
        ).headers["x-driftgate-version"]
        for key in range(40)
    }


@pytest.mark.timeout(90)
def test_redis_stopped_and_restarted_with_data(
    home: Path, artifacts: Path, redis_server: RedisServer
) -> None:
    with (
        gateway(home, DRIFTGATE_REDIS_URL=redis_server.url) as (url, _),
        traffic(url) as statuses,
    ):
        body = {"stable": 2, "canary": {"version": 1, "weight": 50}, "reason": "canary v1"}
        written = httpx.put(f"{url}/admin/models/affine/deployment", json=body, headers=ADMIN)
        assert written.status_code == 200, written.text
        policy = written.json()

        _stop_saving(redis_server)
        _wait(url, healthy=False)
        _assert_writes_refused(url, home, artifacts, "Redis is unreachable")
        assert _served_versions(url) == {"1", "2"}  # the last known policy, stable and canary

        redis_server.start()
        _wait(url, healthy=True)
        served = httpx.get(f"{url}/admin/models/affine/deployment", headers=ADMIN).json()
        assert served == policy  # from the data Redis kept, revision and all
        body = {"stable": 2, "reason": "after the restart"}
        written = httpx.put(f"{url}/admin/models/affine/deployment", json=body, headers=ADMIN)
        assert written.status_code == 200, written.text
        assert written.json()["revision"] == policy["revision"] + 1

        # Restarted with a password the gateway does not have: every connection drops, and
        # new ones are refused, as after a restart with a new `requirepass`.
        admin = redis.Redis.from_url(redis_server.url)
        admin.config_set("requirepass", "rotated")
        for kind in ("normal", "pubsub"):
            admin.client_kill_filter(_type=kind, skipme=True)
        admin.close()
        _wait(url, healthy=False)
        _assert_writes_refused(url, home, artifacts, "authentication failed")
        assert _served_versions(url) == {"2"}
        redis.Redis.from_url(redis_server.url, password="rotated").config_set("requirepass", "")
        _wait(url, healthy=True)

        assert_recovered(home, url, reasons=["canary v1", "after the restart"])
        assert statuses
        assert set(statuses) == {200}
