"""A cluster on simulated hosts (`tests.netns`): Redis on one, an S3 store (moto) on
another, gateways A and B on two more, each with its own data directory (no shared disk).

Versions are registered and deployments set through A only; B serves them from the store
and Redis. Under steady traffic B is cut off from Redis, then from the store, by a silent
partition: B keeps serving its last policy with zero failed predictions, writes on B answer
503, A's writes go on, and B resyncs when the link returns. Counted and asserted: failed
predictions, changes lost and labels lost, all zero.
"""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import LABELLER, stop_process, wait_ready
from tests.faults import ADMIN, ROOT, audit_entries, environ
from tests.netns import Host, Network, namespaces_available, network
from tests.object_store import BUCKET, CREDENTIALS, S3Server

pytestmark = [pytest.mark.faults, pytest.mark.e2e]

REDIS_PORT, STORE_PORT, GATEWAY_PORT = 6379, 5000, 8000
FAST = {  # every call sampled (its label can join), drift evaluated often, a long window
    "DRIFTGATE_SAMPLE_RATE": "1",
    "DRIFTGATE_DRIFT_INTERVAL_SECONDS": "0.2",
    "DRIFTGATE_DRIFT_PANE_SECONDS": "1",
    "DRIFTGATE_DRIFT_WINDOW_PANES": "600",
}
# Long enough that TCP backs off its retransmissions over connections the cut left open,
# as real partitions do: what the gateway does not notice comes back only late, if at all.
REDIS_CUT_SECONDS = 12.0
STEP = 0.005  # seconds between two calls of the steady traffic: enough load on two cores


def _require_namespaces() -> None:
    available, why = namespaces_available()
    if not available:
        pytest.skip(why)


@pytest.fixture
def hosts() -> Iterator[Network]:
    """Hosts `redis`, `store`, `a` and `b`, removed with all they run at the end."""
    _require_namespaces()
    with network("redis", "store", "a", "b") as net:
        yield net


def test_a_cut_drops_packets_both_ways_silently_and_the_runner_reaches_both() -> None:
    """The harness itself: a cut is a silent partition (a connection times out rather than
    being refused), the test runner keeps reaching both hosts, and `heal` undoes it."""
    _require_namespaces()
    listen = "import socket,sys,time; s=socket.create_server((sys.argv[1], 7000)); time.sleep(60)"
    connect = "import socket,sys; socket.create_connection((sys.argv[1], 7000), timeout=0.5)"
    with network("x", "y") as net:
        x, y = net["x"], net["y"]
        servers = [host.popen([sys.executable, "-c", listen, host.address]) for host in (x, y)]
        try:
            for host in (x, y):
                _wait_port(host.address, 7000)
            net.cut(x, y)
            for source, target in ((x, y), (y, x)):
                done = source.run([sys.executable, "-c", connect, target.address], check=False)
                assert "TimeoutError" in done.stderr, done.stderr
                socket.create_connection((target.address, 7000), timeout=1).close()
            net.heal(x, y)
            for source, target in ((x, y), (y, x)):
                source.run([sys.executable, "-c", connect, target.address])
        finally:
            for server in servers:
                server.kill()
                server.wait()


@dataclass
class Steady:
    """Affine calls to one gateway from one thread until stopped, each its own user."""

    url: str
    statuses: dict[int, int] = field(default_factory=dict)  # status (0: no answer) -> count
    failed: list[str] = field(default_factory=list)  # what each failure answered
    slowest: float = 0.0  # seconds

    @property
    def sent(self) -> int:
        return sum(self.statuses.values())

    def run(self, stop: threading.Event) -> None:
        with httpx.Client(base_url=self.url, timeout=10) as client:
            for key in range(10**9):
                if stop.wait(STEP):
                    return
                started = time.monotonic()
                try:
                    response = client.post(
                        "/v2/models/affine/infer",
                        json=_body([0.1, 0.2, 0.3, float(key % 7)]),
                        headers={"x-routing-key": f"user{key}"},
                    )
                    status, text = response.status_code, response.text
                except httpx.TransportError as exc:
                    status, text = 0, repr(exc)
                self.slowest = max(self.slowest, time.monotonic() - started)
                self.statuses[status] = self.statuses.get(status, 0) + 1
                if status != 200:
                    self.failed.append(f"{status} {text[:200]}")


@contextlib.contextmanager
def steady(*urls: str) -> Iterator[list[Steady]]:
    """Steady traffic to each gateway, from a thread each, until the block ends."""
    stop = threading.Event()
    traffic = [Steady(url) for url in urls]
    threads = [threading.Thread(target=each.run, args=(stop,)) for each in traffic]
    for thread in threads:
        thread.start()
    try:
        yield traffic
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=15)


@dataclass
class Labels:
    """Labels of predictions served by one gateway and sent to another, and their fate."""

    pending: dict[str, float] = field(default_factory=dict)  # id -> label, not yet joined
    joined: set[str] = field(default_factory=set)
    lost: list[str] = field(default_factory=list)  # expired or invalid: never to join
    refused: int = 0  # 503 answers (sent again later)

    def predict(self, client: httpx.Client, prefix: str, count: int) -> None:
        """`count` predictions with ids, whose labels (first output plus 0.5) are pending."""
        for index in range(count):
            request_id = f"{prefix}-{index}"
            body = _body([1, 2, 3, float(index)], request_id)
            response = client.post("/v2/models/affine/infer", json=body)
            assert response.status_code == 200, response.text
            (y,) = [output for output in response.json()["outputs"] if output["name"] == "y"]
            self.pending[request_id] = float(y["data"][0]) + 0.5

    def send(self, client: httpx.Client) -> int:
        """Send every pending label once; returns the status."""
        items = [{"id": key, "label": value} for key, value in self.pending.items()]
        response = client.post("/v1/feedback", json={"items": items}, headers=LABELLER)
        if response.status_code == 503:
            self.refused += 1
            return 503
        assert response.status_code == 200, response.text
        result = response.json()
        for key in [*result["expired"], *result["invalid"]]:
            self.lost.append(key)
            del self.pending[key]
        for key in set(self.pending) - set(result["unknown"]):
            self.joined.add(key)
            del self.pending[key]
        return 200

    def settle(self, client: httpx.Client, timeout: float = 5.0) -> None:
        """Send the pending labels until none is left or `timeout` passes (a prediction
        reaches Redis shortly after it is served; one kept while Redis was away, once it
        is back)."""
        deadline = time.monotonic() + timeout
        while self.pending and time.monotonic() < deadline:
            self.send(client)
            if self.pending:
                time.sleep(0.1)


@dataclass
class Findings:
    """Gateway behaviour that departs from the issue's scenario, gathered so that one run
    reports all of it (the counts and the setup are plain asserts)."""

    problems: list[str] = field(default_factory=list)

    def expect(self, ok: bool, problem: str) -> bool:
        if not ok:
            self.problems.append(problem)
        return ok


@pytest.mark.timeout(180)
def test_host_b_cut_from_redis_then_the_store_serves_on_refuses_writes_and_resyncs(
    tmp_path: Path, artifacts: Path, hosts: Network
) -> None:
    started, found = time.monotonic(), Findings()
    with cluster(tmp_path, hosts) as (a, b):
        registered = {_register(a, artifacts / "affine.onnx", "v1 through A"): "v1 through A"}
        acked = [_write(a, {"stable": 1, "reason": "stable v1"})]
        registered[_register(a, artifacts / "affine_v2.onnx", "v2 through A")] = "v2 through A"
        canary = {"stable": 1, "canary": {"version": 2, "weight": 50}, "reason": "canary v2"}
        acked.append(_write(a, canary))
        assert _eventually(lambda: _deployment(b) == _deployment(a), 10) is not None
        # B never saw an upload: it serves what A registered, from the store.
        assert _infer(b, version=2)["model_version"] == "2"
        assert _served_versions(b) == {"1", "2"}

        a_to_b, b_to_a = Labels(), Labels()  # served by A and labelled on B, and the reverse
        refused_labels = Labels()  # served by A, labelled on B while B is cut from Redis
        with steady(_url(a), _url(b)) as (on_a, on_b):
            a_to_b.predict(a, "a-before", 10)
            b_to_a.predict(b, "b-before", 10)
            a_to_b.settle(b)
            b_to_a.settle(a)

            # B cut from Redis: it serves its last policy and refuses writes; A writes on.
            refused_labels.predict(a, "a-redis-cut", 10)
            with hosts.partition(hosts["b"], hosts["redis"]):
                cut_at = time.monotonic()
                # At once, while B holds connections to Redis that the cut silently broke:
                # "nothing joined", so the labels are sent again later.
                assert refused_labels.send(b) == 503
                noticed = _eventually(lambda: not _backend(b)["healthy"], 5)
                found.expect(
                    noticed is not None,
                    "B's /admin/status still reports Redis healthy 5 s into a partition from "
                    f"it (no write tried meanwhile): {_backend(b)}",
                )
                began = time.monotonic()
                refused = b.put(
                    "/admin/models/affine/deployment",
                    json={**canary, "reason": "written on B while cut from Redis"},
                    headers=ADMIN,
                )
                refused_after = time.monotonic() - began
                assert refused.status_code == 503, refused.text
                found.expect(refused_after < 5, f"a write on B took {refused_after:.1f} s")
                moved = {**canary, "canary": {"version": 2, "weight": 80}}
                acked.append(_write(a, {**moved, "reason": "written on A while B is cut"}))
                assert _deployment(b)["canary"]["weight"] == 50  # its last known policy
                assert _served_versions(b) == {"1", "2"}
                b_to_a.predict(b, "b-redis-cut", 10)  # kept by B until Redis is back
                time.sleep(max(0.0, cut_at + REDIS_CUT_SECONDS - time.monotonic()))
            resync = _eventually(lambda: _deployment(b) == _deployment(a), 30)
            assert resync is not None, "B never applied A's change made while it was cut"
            found.expect(resync < 5, f"B applied A's change {resync} s after the heal")
            assert _deployment(b)["canary"]["weight"] == 80
            recovered = _eventually(lambda: _backend(b)["healthy"], 10)
            found.expect(
                recovered is not None,
                f"B's /admin/status still reports Redis down 10 s after the heal: {_backend(b)}",
            )
            back = {**canary, "canary": {"version": 2, "weight": 60}}
            acked.append(_write(b, {**back, "reason": "written on B after the heal"}))
            upload = _upload(b, artifacts / "affine_v2.onnx", "v3 through B after the heal")
            if found.expect(
                upload.status_code == 201,
                "an upload through B after the Redis heal answered "
                f"{upload.status_code} {upload.text}",
            ):
                registered[upload.json()["version"]] = "v3 through B after the heal"
            a_to_b.settle(b)
            b_to_a.settle(a)

            # B cut from the store: loaded versions serve on, a version it never loaded
            # answers 503, and so do uploads through B; A registers on.
            with hosts.partition(hosts["b"], hosts["store"]):
                assert _infer(b, version=1)["model_version"] == "1"
                assert _infer(b, version=2)["model_version"] == "2"
                new = _register(a, artifacts / "affine.onnx", "through A while B is cut")
                registered[new] = "through A while B is cut"
                began = time.monotonic()
                unloaded = b.post(f"/v2/models/affine/versions/{new}/infer", json=_body([1] * 4))
                unloaded_after = time.monotonic() - began
                assert unloaded.status_code == 503, unloaded.text
                assert unloaded.json()["error"], unloaded.text
                found.expect(unloaded_after < 10, f"v{new} on B took {unloaded_after:.1f} s")
                upload = _upload(b, artifacts / "affine.onnx", "through B while cut from the store")
                found.expect(
                    upload.status_code == 503,
                    "an upload through B cut from the store answered "
                    f"{upload.status_code} {upload.text}",
                )
                began = time.monotonic()
                registry_cut = _status(b)["registry"]
                status_after = time.monotonic() - began
                found.expect(
                    registry_cut["reachable"] is False,
                    f"B's status reports the store reachable while cut: {registry_cut}",
                )
                found.expect(status_after < 5, f"GET /admin/status took {status_after:.1f} s")
                a_to_b.predict(a, "a-store-cut", 10)
                b_to_a.predict(b, "b-store-cut", 10)
                a_to_b.settle(b)
                b_to_a.settle(a)
                assert _served_versions(b) == {"1", "2"}
            # The failed load is tried again by a call after the repository's retry delay.
            served_after = _eventually(lambda: _infers(b, new), 20)
            found.expect(served_after is not None, f"B never served v{new} after the heal")
            registry_healed = _status(b)["registry"]
            found.expect(
                registry_healed["reachable"] is True,
                f"B's status reports the store unreachable after the heal: {registry_healed}",
            )

        # Counted over the whole sequence: predictions failed, changes lost, labels lost.
        # The labels B refused are sent again well after the heal, as a labelling pipeline
        # retries: by then whatever the partition held up in flight has arrived.
        labels = (a_to_b, b_to_a, refused_labels)
        for each, client in zip(labels, (b, a, b), strict=True):
            each.settle(client)
        failed = {"a": on_a.failed, "b": on_b.failed}
        labels_lost = [key for each in labels for key in [*each.lost, *each.pending]]
        joined = sum(len(each.joined) for each in labels)
        changes_lost: dict[str, list[str]] = {}
        for url in (_url(a), _url(b)):
            entries = audit_entries(url)
            logged = {entry["reason"] for entry in entries}
            changes_lost[url] = [reason for reason in acked if reason not in logged]
            assert "written on B while cut from Redis" not in logged
            versions = {
                e["after"]["version"]: e["reason"]
                for e in entries
                if e["action"] == "model.register"
            }
            assert versions == registered
        print(
            f"\nmulti-host: {on_a.sent} calls to A, {on_b.sent} to B, failed "
            f"{len(on_a.failed)} and {len(on_b.failed)} (slowest on B {on_b.slowest:.2f} s); "
            f"changes acknowledged {len(acked)}, lost {sum(map(len, changes_lost.values()))}; "
            f"labels joined {joined}, lost {len(labels_lost)}, refused and sent again "
            f"{sum(each.refused for each in labels)}; B noticed the Redis cut after {noticed} s, "
            f"refused a write in {refused_after:.2f} s, resynced {resync} s and reported "
            f"healthy {recovered} s after the heal; v{new} refused in {unloaded_after:.2f} s "
            f"and served {served_after} s after the heal; {time.monotonic() - started:.1f} s"
        )
        print("departures from the scenario:", *found.problems, sep="\n  ")
        assert min(on_a.sent, on_b.sent) > 100, (on_a.statuses, on_b.statuses)
        outcome = {
            "predictions failed": failed,
            "changes lost": changes_lost,
            "labels lost": labels_lost,
            "departures from the scenario": found.problems,
        }
        assert outcome == {
            "predictions failed": {"a": [], "b": []},
            "changes lost": {_url(a): [], _url(b): []},
            "labels lost": [],
            "departures from the scenario": [],
        }
        for client in (a, b):  # every joined label counts once, in the merged panes
            _wait_labelled(client, joined)


@contextlib.contextmanager
def cluster(tmp_path: Path, hosts: Network) -> Iterator[tuple[httpx.Client, httpx.Client]]:
    """Redis, the store (with its bucket) and gateways A and B, each on its host; yields a
    client of each gateway. Every process is stopped at the end."""
    redis, store = hosts["redis"], hosts["store"]
    endpoint = f"http://{store.address}:{STORE_PORT}"
    gateway_environ = environ(
        **FAST,
        **CREDENTIALS,
        DRIFTGATE_REDIS_URL=f"redis://{redis.address}:{REDIS_PORT}/0",
        DRIFTGATE_REGISTRY_URL=f"s3://{BUCKET}/registry",
        DRIFTGATE_REGISTRY_ENDPOINT=endpoint,
    )
    with contextlib.ExitStack() as stack:
        redis_command = ["redis-server", "--port", str(REDIS_PORT), "--bind", redis.address]
        # Protected mode refuses every address but loopback when there is no password; the
        # server's namespace is reachable from the test network only.
        redis_command += ["--protected-mode", "no", "--save", "", "--appendonly", "no"]
        redis_command += ["--dir", str(tmp_path)]
        _started(stack, redis.popen(redis_command, stdout=subprocess.DEVNULL))
        store_command = [sys.executable, "-m", "moto.server", "-H", store.address]
        store_command += ["-p", str(STORE_PORT)]
        _started(stack, store.popen(store_command, stderr=subprocess.DEVNULL))
        _wait_port(redis.address, REDIS_PORT)
        _wait_port(store.address, STORE_PORT)
        # The server runs on the store's host; this object only gives the runner a client.
        S3Server(STORE_PORT, host=store.address).client().create_bucket(Bucket=BUCKET)
        urls = []
        for host in (hosts["a"], hosts["b"]):
            home = tmp_path / host.name
            process = _started(stack, _serve(host, home, gateway_environ))
            urls.append((f"http://{host.address}:{GATEWAY_PORT}", process))
        for url, process in urls:
            wait_ready(url, process)
        one = stack.enter_context(httpx.Client(base_url=urls[0][0], timeout=30))
        two = stack.enter_context(httpx.Client(base_url=urls[1][0], timeout=30))
        yield one, two


def _serve(host: Host, home: Path, environ: dict[str, str]) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-m", "gateway", "serve", "--home", str(home)]
    command += ["--host", host.address, "--port", str(GATEWAY_PORT)]
    return host.popen(command, env=environ, cwd=ROOT)


def _started(
    stack: contextlib.ExitStack, process: subprocess.Popen[bytes]
) -> subprocess.Popen[bytes]:
    stack.callback(stop_process, process)
    return process


def _url(client: httpx.Client) -> str:
    return str(client.base_url).rstrip("/")


def _wait_port(address: str, port: int, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection((address, port), timeout=0.5).close()
            return
        except OSError:
            assert time.monotonic() < deadline, f"nothing listens on {address}:{port}"
            time.sleep(0.05)


def _body(row: list[float], request_id: str | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32", "data": row}]
    }
    if request_id is not None:
        body["id"] = request_id
    return body


def _upload(client: httpx.Client, model: Path, description: str) -> httpx.Response:
    reference = model.parent / "affine.parquet"
    return client.post(
        "/admin/models/affine/versions",
        headers=ADMIN,
        files={
            "model": ("model.onnx", model.read_bytes()),
            "reference": ("reference.parquet", reference.read_bytes()),
            "target": (None, "label"),
            "description": (None, description),
        },
    )


def _register(client: httpx.Client, model: Path, description: str) -> int:
    """Upload a version; returns its number."""
    response = _upload(client, model, description)
    assert response.status_code == 201, response.text
    version: int = response.json()["version"]
    return version


def _write(client: httpx.Client, body: dict[str, Any]) -> str:
    """Set the deployment; returns the reason of this acknowledged change."""
    response = client.put("/admin/models/affine/deployment", json=body, headers=ADMIN)
    assert response.status_code == 200, response.text
    reason: str = body["reason"]
    return reason


def _deployment(client: httpx.Client) -> dict[str, Any]:
    response = client.get("/admin/models/affine/deployment", headers=ADMIN)
    assert response.status_code == 200, response.text
    deployment: dict[str, Any] = response.json()
    return deployment


def _eventually(check: Callable[[], bool], timeout: float) -> float | None:
    """Seconds until `check` held (polled every 0.1 s), or None if it did not in `timeout`."""
    began = time.monotonic()
    while not check():
        if time.monotonic() - began > timeout:
            return None
        time.sleep(0.1)
    return round(time.monotonic() - began, 2)


def _status(client: httpx.Client) -> dict[str, Any]:
    response = client.get("/admin/status", headers=ADMIN)
    assert response.status_code == 200, response.text
    status: dict[str, Any] = response.json()
    return status


def _backend(client: httpx.Client) -> dict[str, Any]:
    backend: dict[str, Any] = _status(client)["state_backend"]
    return backend


def _infer(client: httpx.Client, *, version: int) -> dict[str, Any]:
    response = client.post(f"/v2/models/affine/versions/{version}/infer", json=_body([1, 2, 3, 4]))
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    return answer


def _infers(client: httpx.Client, version: int) -> bool:
    url = f"/v2/models/affine/versions/{version}/infer"
    return client.post(url, json=_body([1, 2, 3, 4])).status_code == 200


def _served_versions(client: httpx.Client) -> set[str]:
    """The versions that 40 users (routing keys) are served."""
    versions = set()
    for key in range(40):
        response = client.post(
            "/v2/models/affine/infer",
            json=_body([1, 2, 3, 4]),
            headers={"x-routing-key": f"u{key}"},
        )
        assert response.status_code == 200, response.text
        versions.add(str(response.json()["model_version"]))
    return versions


def _wait_labelled(client: httpx.Client, labelled: int, timeout: float = 20.0) -> None:
    """Wait until the quality reports of every version count `labelled` labels in all,
    each with the mean absolute error every label was sent with (0.5)."""
    deadline = time.monotonic() + timeout
    while True:
        reports = client.get("/v1/models/affine/drift").json()
        counted = sum(report["quality"]["labelled"] for report in reports)
        if counted == labelled:
            break
        assert time.monotonic() < deadline, (counted, labelled, reports)
        time.sleep(0.1)
    for report in reports:
        if report["quality"]["labelled"]:
            assert report["quality"]["realized_mae"] == pytest.approx(0.5, abs=1e-3)
