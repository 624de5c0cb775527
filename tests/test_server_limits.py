"""Server limits against a real gateway process: header size and count, connections,
keep-alive, and header and body timeouts (slow-loris)."""

from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from tests.conftest import ADMIN_TOKEN, running_gateway

pytestmark = pytest.mark.e2e
LIMITS = {
    "DRIFTGATE_MAX_HEADER_BYTES": "65536",
    "DRIFTGATE_MAX_HEADERS": "50",
    "DRIFTGATE_MAX_CONNECTIONS": "40",
    "DRIFTGATE_KEEP_ALIVE_SECONDS": "1",
    "DRIFTGATE_HEADER_TIMEOUT_SECONDS": "1",
    "DRIFTGATE_BODY_TIMEOUT_SECONDS": "1",
}
REQUEST_START = b"GET /v2/health/live HTTP/1.1\r\nHost: gateway\r\n"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One gateway (no models: the health routes suffice) with small limits."""
    with running_gateway(tmp_path_factory.mktemp("limits"), **LIMITS) as url:
        yield url


def connect(url: str) -> socket.socket:
    parts = urlsplit(url)
    return socket.create_connection((parts.hostname, parts.port), timeout=5)


def closed_within(sock: socket.socket, seconds: float) -> bool:
    """Whether the server closes `sock` within `seconds` (reading whatever it answers)."""
    sock.settimeout(seconds)
    try:
        while sock.recv(65536):
            pass
    except (TimeoutError, BlockingIOError):
        return False
    except OSError:  # reset: closed too
        pass
    return True


def rss_bytes(url: str) -> int:
    status = httpx.get(f"{url}/admin/status", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
    pid = status.json()["controller"]["pid"]
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def test_unfinished_huge_headers_are_cut_off_and_memory_stays_bounded(server: str) -> None:
    before = rss_bytes(server)
    sockets = [connect(server) for _ in range(20)]
    chunk = b"a" * 65536
    sent = []
    for sock in sockets:  # 20 headers of up to 8 MB that never end
        count = 0
        with contextlib.suppress(OSError):
            sock.sendall(REQUEST_START + b"X-Big: ")
            for _ in range(128):
                sock.sendall(chunk)
                count += len(chunk)
        sent.append(count)
    assert all(closed_within(sock, 5) for sock in sockets)
    assert max(sent) < 8 * 1024 * 1024  # cut off, not read to the end
    # Unbounded, httptools held each header whole (and copies while growing it).
    assert rss_bytes(server) - before < 40 * 1024 * 1024
    for sock in sockets:
        sock.close()
    assert httpx.get(f"{server}/v2/health/live").status_code == 200


def test_oversized_or_too_many_headers_are_answered_431(server: str) -> None:
    big = httpx.get(f"{server}/v2/health/live", headers={"X-Big": "a" * 100_000})
    assert big.status_code == 431
    assert "over 65536 bytes" in big.json()["error"]
    many = httpx.get(f"{server}/v2/health/live", headers={f"X-{i}": "1" for i in range(60)})
    assert many.status_code == 431
    assert "the limit is 50" in many.json()["error"]
    fine = httpx.get(f"{server}/v2/health/live", headers={"X-Big": "a" * 30_000})
    assert fine.status_code == 200


def test_slow_loris_is_closed_after_the_timeout_while_requests_are_served(server: str) -> None:
    silent = [connect(server) for _ in range(10)]
    trickling = [connect(server) for _ in range(10)]
    slow_bodies = [connect(server) for _ in range(10)]
    for sock in trickling:
        sock.sendall(REQUEST_START)
    for sock in slow_bodies:
        sock.sendall(b"POST /v2/models/m/infer HTTP/1.1\r\nHost: g\r\nContent-Length: 9999\r\n\r\n")
    started = time.monotonic()
    served = 0
    while time.monotonic() - started < 1.0:  # each slow client sends a byte now and then
        for sock in trickling:
            sock.sendall(b"X")
        for sock in slow_bodies:
            sock.sendall(b"{")
        assert httpx.get(f"{server}/v2/health/live").status_code == 200
        served += 1
        time.sleep(0.1)
    assert served >= 5
    # Closed by the server within the timeout (1 s) and a quarter, not kept for ever.
    deadline = started + 3.0  # with a margin for a busy machine
    for sock in silent + trickling + slow_bodies:
        assert closed_within(sock, max(0.2, deadline - time.monotonic()))
        sock.close()


def test_connection_limit_frees_up_when_slow_clients_time_out(server: str) -> None:
    idle = [connect(server) for _ in range(45)]  # more than max_connections
    time.sleep(0.2)  # let the server accept them all
    assert httpx.get(f"{server}/v2/health/live").status_code == 503
    time.sleep(1.6)  # the header timeout closes them
    assert httpx.get(f"{server}/v2/health/live").status_code == 200
    for sock in idle:
        sock.close()


def test_idle_kept_alive_connections_close(server: str) -> None:
    def live(sock: socket.socket) -> bytes:
        sock.sendall(REQUEST_START + b"\r\n")
        answer = b""
        while not answer.endswith(b'{"live":true}'):
            answer += sock.recv(65536)
        return answer

    sock = connect(server)
    assert live(sock).startswith(b"HTTP/1.1 200")
    time.sleep(0.5)
    assert live(sock).startswith(b"HTTP/1.1 200")  # still open within keep_alive_seconds
    assert closed_within(sock, 2.0)
    sock.close()


def test_workers_apply_the_limits_and_leave_no_metrics_directory(tmp_path: Path) -> None:
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    stale = scratch / "driftgate-metrics-999999999-crashed"  # its process is long gone
    stale.mkdir()
    environ = {"DRIFTGATE_WORKERS": "2", "TMPDIR": str(scratch), **LIMITS}
    with running_gateway(tmp_path / "home", **environ) as url:
        assert not stale.exists()
        assert len(list(scratch.glob("driftgate-metrics-*"))) == 1
        big = httpx.get(f"{url}/v2/health/live", headers={"X-Big": "a" * 100_000})
        assert big.status_code == 431  # the limits reach the worker processes
    assert list(scratch.glob("driftgate-*")) == []
