"""`driftgate demo` tells the whole story, and the retraining example closes the loop."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.conftest import ADMIN_TOKEN, RedisServer, running_gateway

pytestmark = pytest.mark.e2e
EXAMPLE = Path(__file__).parents[1] / "examples" / "retrain.py"


@pytest.mark.timeout(240)
def test_the_demo_story_and_an_unattended_retraining(tmp_path: Path) -> None:
    demo = subprocess.run(
        [sys.executable, "-m", "gateway", "demo", "--home", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    story = demo.stdout
    assert demo.returncode == 0, story + demo.stderr
    assert "version 2: rolled_back" in story
    assert "accuracy: worse than stable" in story
    assert "version 3: promoted" in story
    assert "retraining requested for version 3" in story
    timeline = story[story.index("timeline") :]
    for action in ["rollout.start", "rollout.rollback", "rollout.promote", "retraining.requested"]:
        assert action in timeline

    (export,) = (tmp_path / "exports").glob("demo-v3-*.parquet")
    with running_gateway(tmp_path) as url:
        retrained = subprocess.run(
            [
                sys.executable,
                str(EXAMPLE),
                "--export",
                str(export),
                "--model",
                "demo",
                "--url",
                url,
                "--token",
                ADMIN_TOKEN,
            ],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert retrained.returncode == 0, retrained.stdout + retrained.stderr
        assert "registered demo version 4" in retrained.stdout
        state = httpx.get(
            f"{url}/admin/models/demo/rollout", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}
        ).json()
        assert (state["version"], state["status"]) == (4, "running")


@pytest.mark.timeout(240)
def test_the_same_story_with_two_gateways_on_one_redis(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    demo = subprocess.run(
        [
            sys.executable,
            "-m",
            "gateway",
            "demo",
            "--home",
            str(tmp_path),
            "--redis-url",
            redis_server.url,
        ],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert demo.returncode == 0, demo.stdout + demo.stderr
    assert demo.stdout.count("http://127.0.0.1:") >= 2  # two gateways served the users
    for step in ["version 2: rolled_back", "version 3: promoted", "retraining requested"]:
        assert step in demo.stdout
