"""A wrong Redis password is a configuration error, said as such: logged, reported in
`/admin/status` and readiness, and named in the 503 of refused writes."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from litestar.testing import TestClient

from gateway.app import create_app
from gateway.settings import Settings
from tests.conftest import ADMIN_TOKEN, TOKENS, RedisServer

pytestmark = pytest.mark.faults
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


class Collected(logging.Handler):
    """What one logger logs (the app's logging setup takes the root logger from caplog)."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@pytest.fixture
def state_logs() -> Iterator[Collected]:
    logger = logging.getLogger("registry.state_redis")
    logs = Collected()
    logger.addHandler(logs)
    try:
        yield logs
    finally:
        logger.removeHandler(logs)


def test_wrong_redis_password_is_reported_not_called_unreachable(
    home: Path, redis_server: RedisServer, state_logs: Collected
) -> None:
    redis.Redis.from_url(redis_server.url).config_set("requirepass", "right")
    wrong = redis_server.url.replace("redis://", "redis://:wrong@")
    client: TestClient[Any]
    with TestClient(app=create_app(Settings(home=home, tokens=TOKENS, redis_url=wrong))) as client:
        ready = client.get("/v2/health/ready")
        assert ready.status_code == 503
        assert ready.json()["ready"] is False
        assert "authentication failed" in ready.json()["error"]
        backend = client.get("/admin/status", headers=ADMIN).json()["state_backend"]
        assert backend["healthy"] is False
        assert "authentication failed" in backend["error"]
        refused = client.put("/admin/models/affine/deployment", json={"stable": 1}, headers=ADMIN)
        assert refused.status_code == 503
        assert "authentication failed" in refused.json()["error"]
        assert "unreachable" not in refused.json()["error"]
        assert ":wrong@" not in refused.json()["error"]  # the URL's password is not echoed
        logged = [text for text in state_logs.messages if "authentication failed" in text]
        assert len(logged) == 1  # once, not at every retry

        # Fixed (here: the server takes that password), it reconnects by itself.
        redis.Redis.from_url(redis_server.url, password="right").config_set("requirepass", "wrong")
        deadline = time.monotonic() + 5
        while client.get("/v2/health/ready").status_code != 200:
            assert time.monotonic() < deadline
            time.sleep(0.1)
        assert client.get("/admin/status", headers=ADMIN).json()["state_backend"] == {
            "kind": "redis",
            "healthy": True,
            "error": None,
        }
