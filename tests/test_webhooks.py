"""Webhook deliveries: signed as Standard Webhooks specifies, retried with a bound, counted,
against a real HTTP receiver on loopback."""

from __future__ import annotations

import base64
import hashlib
import hmac
import http.server
import threading
import time
from collections.abc import Iterator
from typing import ClassVar

import pytest
from prometheus_client import CollectorRegistry

from monitor.metrics import GatewayMetrics
from monitor.webhooks import WebhookSender, sign, signing_key, verify
from tests.conftest import free_port

pytestmark = pytest.mark.anyio
SECRET = "a-webhook-secret-of-32-characters"
FAST = (0.01, 0.01, 0.01)


class Receiver(http.server.BaseHTTPRequestHandler):
    """Keeps every attempt (headers and body) and answers the statuses queued in `answers`."""

    attempts: ClassVar[list[tuple[dict[str, str], bytes]]] = []
    answers: ClassVar[list[int]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["content-length"]))
        Receiver.attempts.append(({k.lower(): v for k, v in self.headers.items()}, body))
        self.send_response(Receiver.answers.pop(0) if Receiver.answers else 200)
        self.end_headers()

    def log_message(self, *_: object) -> None:
        pass


@pytest.fixture
def receiver() -> Iterator[str]:
    Receiver.attempts, Receiver.answers = [], []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hook"
    server.shutdown()
    server.server_close()


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def _count(metrics: GatewayMetrics, name: str, **labels: str) -> float:
    return metrics.registry.get_sample_value(name, labels) or 0.0


async def test_a_delivery_is_signed_and_retried_until_accepted(receiver: str) -> None:
    metrics = GatewayMetrics(CollectorRegistry())
    sender = WebhookSender(SECRET, metrics, backoff=FAST)
    Receiver.answers = [503, 502]
    payload = b'{"model": "affine", "action": "rollout.promote"}'
    try:
        response = await sender.post("notify", receiver, payload)
    finally:
        await sender.close()

    assert response is not None
    assert response.status_code == 200
    assert len(Receiver.attempts) == 3
    ids = {headers["webhook-id"] for headers, _ in Receiver.attempts}
    assert len(ids) == 1  # one message: a receiver deduplicates retries by it
    headers, body = Receiver.attempts[-1]
    assert body == payload
    assert headers["content-type"] == "application/json"
    assert abs(int(headers["webhook-timestamp"]) - time.time()) < 60
    # The documented format, computed here by hand: v1,base64(HMAC-SHA256(key, id.ts.body)).
    signed = f"{headers['webhook-id']}.{headers['webhook-timestamp']}.".encode() + body
    digest = hmac.new(SECRET.encode(), signed, hashlib.sha256).digest()
    assert headers["webhook-signature"] == "v1," + base64.b64encode(digest).decode()
    assert verify(SECRET, headers, body)
    assert _count(metrics, "driftgate_webhook_retries_total", kind="notify") == 2
    assert (
        _count(metrics, "driftgate_webhook_deliveries_total", kind="notify", outcome="delivered")
        == 1
    )


async def test_an_unreachable_receiver_costs_four_attempts_then_is_counted() -> None:
    metrics = GatewayMetrics(CollectorRegistry())
    sender = WebhookSender(SECRET, metrics, backoff=FAST)
    try:
        response = await sender.post("gate", f"http://127.0.0.1:{free_port()}/x", b"{}")
    finally:
        await sender.close()
    assert response is None
    assert _count(metrics, "driftgate_webhook_retries_total", kind="gate") == 3
    assert (
        _count(metrics, "driftgate_webhook_deliveries_total", kind="gate", outcome="unreachable")
        == 1
    )


async def test_a_refusal_is_final_and_counted(receiver: str) -> None:
    metrics = GatewayMetrics(CollectorRegistry())
    sender = WebhookSender(SECRET, metrics, backoff=FAST)
    Receiver.answers = [400]
    try:
        response = await sender.post("retraining", receiver, b"{}")
    finally:
        await sender.close()
    assert response is not None
    assert response.status_code == 400
    assert len(Receiver.attempts) == 1  # the receiver said no: asking again changes nothing
    labels = {"kind": "retraining", "outcome": "refused"}
    assert _count(metrics, "driftgate_webhook_deliveries_total", **labels) == 1


def test_verify_refuses_forgeries_and_replays() -> None:
    key = signing_key(SECRET)
    stamp = str(int(time.time()))
    headers = {
        "webhook-id": "msg_1",
        "webhook-timestamp": stamp,
        "webhook-signature": sign(key, "msg_1", stamp, b"{}"),
    }
    assert verify(SECRET, headers, b"{}")
    assert not verify(SECRET, headers, b'{"x": 1}')  # altered body
    assert not verify("another-secret-of-many-chars", headers, b"{}")
    assert not verify(SECRET, headers, b"{}", now=time.time() + 301)  # a replay, later
    assert not verify(SECRET, {**headers, "webhook-id": "msg_2"}, b"{}")
    assert not verify(SECRET, {"webhook-id": "msg_1"}, b"{}")
    rotated = {**headers, "webhook-signature": f"v1,bm90IGl0 {headers['webhook-signature']}"}
    assert verify(SECRET, rotated, b"{}")  # one of several signatures (a key being rotated)


def test_the_standard_webhooks_test_vector() -> None:
    """The example of the Standard Webhooks specification, so its libraries verify ours."""
    key = signing_key("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
    signature = sign(key, "msg_p5jXN8AQM9LWM0D4loKWxJek", "1614265330", b'{"test": 2432232314}')
    assert signature == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


async def test_unsigned_deliveries_still_carry_an_id(receiver: str) -> None:
    sender = WebhookSender("", backoff=FAST)
    try:
        response = await sender.post("notify", receiver, b"{}")
    finally:
        await sender.close()
    assert response is not None
    assert response.status_code == 200
    headers, _ = Receiver.attempts[0]
    assert headers["webhook-id"].startswith("msg_")
    assert "webhook-signature" not in headers
