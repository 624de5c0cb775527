"""`driftgate demo` tells the whole story, and the retraining example closes the loop."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.conftest import ADMIN_TOKEN, RedisServer, running_gateway

pytestmark = pytest.mark.e2e
EXAMPLE = Path(__file__).parents[1] / "examples" / "retrain.py"


@pytest.mark.timeout(240)
def test_the_demo_story_its_console_and_an_unattended_retraining(tmp_path: Path) -> None:
    errors = tmp_path / "demo.err"
    with errors.open("w") as stderr:
        demo = subprocess.Popen(
            [sys.executable, "-m", "gateway", "demo", "--ui", "--home", str(tmp_path)],
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        assert demo.stdout is not None
        story = ""
        try:
            while "press Ctrl-C to stop" not in story and demo.poll() is None:
                story += demo.stdout.readline()
            assert demo.poll() is None, story + errors.read_text()
            look_at_the_console(story)
        finally:
            demo.send_signal(signal.SIGINT)  # as a newcomer stops it
            rest, _ = demo.communicate(timeout=30)
    story += rest
    assert demo.returncode == 0, story + errors.read_text()
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


def look_at_the_console(story: str) -> None:
    """What `--ui` promises: v2's rollback with its failing gate, v3 promoted, drifted
    features, in the console whose URL and token it printed."""
    url = re.search(r"console +(http://\S+)/ui\n", story)
    token = re.search(r"log in +(\S+) +\(operator", story)
    assert url is not None, story
    assert token is not None, story
    with httpx.Client(base_url=url[1], timeout=10) as browser:
        form = browser.get("/ui/login")
        secret = re.search(r'name="_csrf" value="([^"]+)"', form.text)
        assert secret is not None
        browser.post("/ui/login", data={"token": token[1], "_csrf": secret[1]})
        rollout = browser.get("/ui/models/demo/rollout").text
        assert 'data-status="promoted"' in rollout
        audit = browser.get("/ui/audit", params={"model": "demo"}).text
        assert 'data-action="rollout.rollback"' in audit
        assert '<strong class="gate-fail">accuracy fail' in audit
        version = browser.get("/ui/models/demo/versions/3").text
        assert 'data-feature="alcohol" data-status="drift"' in version


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
