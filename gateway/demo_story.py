"""`driftgate demo`: the closed loop in about a minute, on the embedded default.

A real gateway on a loopback socket serves the wine classifier while simulated users call
it. A bad version 2 is rolled out and rolled back by the gates; a good version 3 is rolled
out and promoted; then the users' data shifts, the stable version drifts, and a retraining
event fires with a Parquet export. The timeline is read back from the audit log.

With `ui`, the gateway then stays up, the users keep calling it (so the drift stays in
view), and the console's URL and login tokens are printed, until Ctrl-C.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import socket
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import msgspec
import numpy as np
import uvicorn

from gateway.app import create_app
from gateway.demo import DEMO_MODEL, train_demo_model
from gateway.settings import Settings, settings_environ
from registry import ModelRegistry

TOKEN = secrets.token_urlsafe(16)  # a fresh admin token per run, never a fixed one
VIEWER_TOKEN = secrets.token_urlsafe(16)  # the console's read-only login
LABELS_TOKEN = secrets.token_urlsafe(16)  # the users' labelling pipeline: feedback role only
INTERVAL = 2.0  # seconds between rollout evaluations
ROLLOUT = {
    "interval_seconds": INTERVAL,
    "min_samples": 40,
    "steps": [25, 50],
    "failure_limit": 2,
    "consecutive_failure_limit": 2,
    "gates": {
        "max_p99_ratio": None,
        "max_p99_seconds": 0.5,
        "max_accuracy_drop": 0.1,  # the users report the true cultivar: accuracy is judged
        "min_labels": 20,
    },
}


class Story:
    """The demo's state: where it runs, what it saw, and how to narrate it."""

    def __init__(self, home: Path, say: Callable[[str], None], redis_url: str = "") -> None:
        self.home = home
        self.redis_url = redis_url
        self.say = say
        self.registry = ModelRegistry(home / "models")
        self.shift = 0.0  # added to the users' inputs, in reference std units
        self.pause = 0.0  # seconds each user waits between calls (a trickle once told)
        self.started = time.monotonic()
        rows, targets = _wine()
        self.rows = rows
        self.targets = targets
        self.std = rows.std(axis=0)

    def note(self, text: str) -> None:
        """Print one line of the story with its time."""
        self.say(f"[{time.monotonic() - self.started:5.1f}s] {text}")


async def run_demo(
    home: Path | None = None,
    say: Callable[[str], None] = print,
    redis_url: str = "",
    *,
    ui: bool = False,
) -> dict[str, Any]:
    """Run the whole story; returns what happened (for tests). With `redis_url`, two
    gateway processes share that Redis and the users are spread over both. With `ui`, the
    gateway stays up after the story, for the console, until it is stopped (Ctrl-C)."""
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per call drowns the story
    with contextlib.ExitStack() as stack:
        if home is None:
            home = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="driftgate-demo-")))
        story = Story(home, say, redis_url)
        return await _tell(story, ui=ui)


async def _tell(story: Story, *, ui: bool = False) -> dict[str, Any]:
    story.note("training and registering version 1 of the wine classifier")
    _register(story, "v1", seed=0, description="the first model")
    events = story.home / "retraining-event.json"
    saver = f"import sys; open({str(events)!r}, 'wb').write(sys.stdin.buffer.read())"
    settings = Settings(
        home=story.home,
        tokens=f"operator:admin:{TOKEN},viewer:read:{VIEWER_TOKEN},labeller:feedback:{LABELS_TOKEN}",
        sample_rate=1.0,
        drift_pane_seconds=2.0,
        drift_window_panes=8,
        drift_interval_seconds=1.0,
        retraining_cooldown_seconds=0.0,
        retraining_command=f"{sys.executable} -c {saver!r}",
        log_level="warning",
        redis_url=story.redis_url,
        grpc_port=0,  # the story speaks REST; two gateways cannot share one gRPC port
    )
    outcome: dict[str, Any] = {}
    async with _gateways(settings, 2 if story.redis_url else 1) as (urls, stopped):
        story.note(f"gateway serving on {', '.join(urls)}; users start calling it")
        await _story(story, urls, events, outcome, hold=stopped if ui else None)
    if not ui:  # with the console, the timeline was printed before it
        _print_timeline(story, outcome["timeline"])
    return outcome


async def _story(
    story: Story,
    urls: list[str],
    events: Path,
    outcome: dict[str, Any],
    *,
    hold: Callable[[], Awaitable[None]] | None = None,
) -> None:
    """The story; with `hold`, the users go on calling (more slowly) until it returns."""
    headers = {"Authorization": f"Bearer {TOKEN}"}
    clients = [httpx.AsyncClient(base_url=url, timeout=10, headers=headers) for url in urls]
    client = clients[0]  # the operator's; users are spread over every gateway
    try:
        stop = asyncio.Event()
        users = [
            asyncio.create_task(_user(story, clients[index % len(clients)], index, stop))
            for index in range(4)
        ]
        await asyncio.sleep(3)

        story.note("registering version 2 (trained on shuffled labels: it predicts nonsense)")
        _register(story, "v2", seed=0, broken=True, description="a bad model")
        outcome["v2"] = await _rollout(story, client, 2)

        story.note("registering version 3 (trained on another split: a sound model)")
        _register(story, "v3", seed=1, description="a good model")
        outcome["v3"] = await _rollout(story, client, 3)

        story.note("the users' data shifts: alcohol and colour intensity rise by 2 std")
        story.shift = 2.0

        async def exported() -> bool:
            return events.exists()

        outcome["retraining"] = await _wait(exported, 45)
        if outcome["retraining"]:
            event = msgspec.json.decode(events.read_bytes())
            story.note(
                f"retraining requested for version {event['version']}: drifted "
                f"{', '.join(event['drifted'])}; {event['rows']} rows in {event['export']}"
            )
            outcome["event"] = event
        audit = (await client.get("/admin/audit", params={"model": DEMO_MODEL})).json()
        outcome["timeline"] = audit["entries"]
        if hold is not None:
            _print_timeline(story, outcome["timeline"])
            story.pause = 0.05  # enough calls to keep the drift window full, no more
            _print_console(story, urls[0])
            await hold()
        stop.set()
        await asyncio.gather(*users)
    finally:
        for each in clients:
            await each.aclose()


Stopped = Callable[[], Awaitable[None]]  # returns once the gateways have stopped


@contextlib.asynccontextmanager
async def _gateways(settings: Settings, count: int) -> AsyncIterator[tuple[list[str], Stopped]]:
    """One gateway in this process (embedded state), or `count` processes sharing Redis;
    with their URLs, a function that returns once they stop (Ctrl-C stops them)."""
    if count == 1:
        port = _free_port()
        server = uvicorn.Server(
            uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_level="warning")
        )
        serving = asyncio.create_task(server.serve())
        while not server.started:
            await asyncio.sleep(0.05)

        async def served() -> None:
            await asyncio.shield(serving)

        try:
            yield [f"http://127.0.0.1:{port}"], served
        finally:
            server.should_exit = True
            await serving
        return
    ports = [_free_port() for _ in range(count)]
    processes = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "gateway",
            "serve",
            "--port",
            str(port),
            # The demo's own tokens: its gateways are children it trusts.
            env={
                **os.environ,
                **settings_environ(msgspec.structs.replace(settings, port=port), secrets=True),
            },
        )
        for port in ports
    ]
    urls = [f"http://127.0.0.1:{port}" for port in ports]
    try:
        async with httpx.AsyncClient() as probe:
            for url in urls:

                async def ready(url: str = url) -> bool:
                    with contextlib.suppress(httpx.HTTPError):
                        return (await probe.get(f"{url}/v2/health/ready")).status_code == 200
                    return False

                if not await _wait(ready, 60):
                    raise RuntimeError(f"the gateway at {url} did not start")

        async def exited() -> None:
            waits = [asyncio.create_task(process.wait()) for process in processes]
            _, pending = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            for wait in pending:
                wait.cancel()

        yield urls, exited
    finally:
        for process in processes:
            with contextlib.suppress(ProcessLookupError):  # one that already exited
                process.terminate()
            await process.wait()


async def _rollout(story: Story, client: httpx.AsyncClient, version: int) -> str:
    response = await client.post(
        f"/admin/models/{DEMO_MODEL}/rollout", json={"version": version, "config": ROLLOUT}
    )
    response.raise_for_status()
    story.note(f"rollout of version {version} started: canary at 25%, judged every {INTERVAL:g} s")
    state: dict[str, Any] = {}

    async def finished() -> bool:
        nonlocal state
        state = (await client.get(f"/admin/models/{DEMO_MODEL}/rollout")).json()
        return state["status"] not in ("running", "paused")

    await _wait(finished, 60)
    reasons = (
        "; ".join(
            f"{g['gate']}: {g['reason']}" for g in state["last"]["gates"] if g["verdict"] != "pass"
        )
        or "every gate passed"
    )
    story.note(
        f"version {version}: {state['status']} after {state['evaluations']} evaluations ({reasons})"
    )
    return str(state["status"])


async def _user(story: Story, client: httpx.AsyncClient, index: int, stop: asyncio.Event) -> None:
    """Calls the model with wine samples and, a moment later, reports their true cultivar."""
    rng = np.random.default_rng(index)
    sent = 0
    labels: list[dict[str, Any]] = []
    while not stop.is_set():
        pick = int(rng.integers(len(story.rows)))
        row = story.rows[pick] + rng.normal(0, 0.05, 13) * story.std
        row[[0, 9]] += story.shift * story.std[[0, 9]]  # alcohol, colour intensity
        body = {
            "id": f"user{index}-{sent}",
            "inputs": [
                {"name": "input", "shape": [1, 13], "datatype": "FP32", "data": row.tolist()}
            ],
        }
        with contextlib.suppress(httpx.HTTPError):
            await client.post(
                f"/v2/models/{DEMO_MODEL}/infer",
                json=body,
                headers={"x-routing-key": f"user{index}-{sent}"},
            )
            labels.append({"id": body["id"], "label": int(story.targets[pick])})
            if len(labels) == 20:
                await client.post(
                    "/v1/feedback",
                    json={"items": labels},
                    headers={"Authorization": f"Bearer {LABELS_TOKEN}"},
                )
                labels = []
        sent += 1
        if story.pause:
            await asyncio.sleep(story.pause)


def _register(story: Story, name: str, **training: Any) -> None:
    description = training.pop("description")
    model, reference = train_demo_model(story.home / "training" / name, **training)
    manifest = story.registry.register(
        DEMO_MODEL,
        model,
        reference,
        target="target",
        description=description,
        owner="demo",
        actor="data-scientist",
    )
    story.note(f"registered {DEMO_MODEL} version {manifest.version} ({description})")


async def _wait(done: Callable[[], Awaitable[bool]], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not await done():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.5)
    return True


def _print_timeline(story: Story, entries: list[dict[str, Any]]) -> None:
    story.say("\ntimeline (from the audit log):")
    for entry in entries:
        if entry["action"] == "rollout.evaluate":
            continue  # waits: shown in their totals above
        story.say(
            f"  {entry['time'][11:19]}  {entry['actor']:<14} {entry['action']:<20} "
            f"{entry['reason'][:90]}"
        )


def _print_console(story: Story, url: str) -> None:
    story.say(
        f"\nthe gateway stays up, the users keep calling it: watch it in the console\n"
        f"  console   {url}/ui\n"
        f"  log in    {TOKEN}   (operator, admin: may pause, resume, promote, roll back)\n"
        f"            {VIEWER_TOKEN}   (viewer, read only)\n"
        f"  see       the models page, demo version 3's drifted features "
        f"({url}/ui/models/{DEMO_MODEL}/versions/3),\n"
        f"            the rollout of version 3 ({url}/ui/models/{DEMO_MODEL}/rollout), and "
        f"version 2's rollback\n"
        f"            with its failing gates in the audit log ({url}/ui/audit)\n"
        f"  API docs  {url}/docs\n"
        f"press Ctrl-C to stop"
    )


def _wine() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_wine

    wine = load_wine()
    return wine.data.astype(np.float32), wine.target


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port
