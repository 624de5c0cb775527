"""Outbound webhooks (rollout gates and decisions, retraining events): signed, retried, counted.

Every delivery is signed as Standard Webhooks (https://www.standardwebhooks.com) specifies,
so a receiver verifies it with that project's libraries or a few lines of its own:

    webhook-id:         the message's id, the same on every retry: deduplicate by it
    webhook-timestamp:  this attempt's time, in seconds since the epoch: refuse one more
                        than five minutes from your clock, a replay
    webhook-signature:  v1,<base64 of HMAC-SHA256(key, "<id>.<timestamp>.<body>")>

The key is the secret's UTF-8 bytes, or, for a secret `whsec_<base64>` as Standard Webhooks'
libraries generate them, the decoded bytes. `verify` is the receiver's side.

A delivery is tried again after a transport error or an answer that says "later" (429, 502,
503, 504), after 0.5, 1 and 2 s: four attempts at most, so a dead receiver delays the
rollout controller by seconds, never more. Each outcome is counted by kind
(`driftgate_webhook_deliveries_total`), and each call is a client span carrying the
caller's `traceparent` when tracing is on.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import logging
import time
import uuid
from collections.abc import Mapping

import httpx
from opentelemetry import propagate, trace

from monitor.metrics import GatewayMetrics

logger = logging.getLogger(__name__)
RETRY_STATUSES = frozenset({429, 502, 503, 504})
BACKOFF_SECONDS = (0.5, 1.0, 2.0)
TOLERANCE_SECONDS = 300
_tracer = trace.get_tracer(__name__)


class WebhookSender:
    """Posts JSON payloads to webhooks on one connection pool (create it in the running loop)."""

    def __init__(
        self,
        secret: str,
        metrics: GatewayMetrics | None = None,
        *,
        timeout: float = 5.0,
        backoff: tuple[float, ...] = BACKOFF_SECONDS,
    ) -> None:
        """`secret`: the signing key; empty sends unsigned deliveries (logged once)."""
        self._key = signing_key(secret) if secret else None
        self._warned_unsigned = False
        self._metrics = metrics
        self._timeout = timeout
        self._backoff = backoff
        self._client: httpx.AsyncClient | None = None

    async def post(self, kind: str, url: str, payload: bytes) -> httpx.Response | None:
        """Deliver `payload` to `url`: the last answer (whatever its status), or None if the
        receiver could not be reached. `kind` names the webhook in metrics and spans."""
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=self._timeout)
        if self._key is None and not self._warned_unsigned:
            self._warned_unsigned = True
            logger.warning("webhook deliveries are unsigned: set webhook_secret to sign them")
        message_id = f"msg_{uuid.uuid4().hex}"
        target = httpx.URL(url)
        where = describe_url(url)
        with _tracer.start_as_current_span(
            f"webhook {kind}",
            kind=trace.SpanKind.CLIENT,
            attributes={"server.address": target.host, "url.path": target.path},
        ) as span:
            response = None
            for attempt, delay in enumerate((0.0, *self._backoff)):
                if delay:
                    self._count_retry(kind)
                    await asyncio.sleep(delay)
                headers = self._headers(message_id, payload)
                propagate.inject(headers)
                try:
                    response = await self._client.post(url, content=payload, headers=headers)
                except httpx.HTTPError as exc:
                    response = None
                    logger.warning(
                        "%s webhook to %s: attempt %d failed: %s",
                        kind,
                        where,
                        attempt + 1,
                        type(exc).__name__,
                    )
                    continue
                if response.status_code not in RETRY_STATUSES:
                    break
            outcome = _outcome(response)
            if outcome != "delivered":
                status = f" ({response.status_code})" if response is not None else ""
                logger.warning("%s webhook to %s: %s%s", kind, where, outcome, status)
            span.set_attribute("http.response.status_code", response.status_code if response else 0)
            if self._metrics is not None:
                self._metrics.webhook_deliveries.labels(kind, outcome).inc()
            return response

    async def close(self) -> None:
        """Close the connection pool."""
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    def _headers(self, message_id: str, payload: bytes) -> dict[str, str]:
        headers = {"content-type": "application/json", "webhook-id": message_id}
        if self._key is not None:
            timestamp = str(int(time.time()))
            headers["webhook-timestamp"] = timestamp
            headers["webhook-signature"] = sign(self._key, message_id, timestamp, payload)
        return headers

    def _count_retry(self, kind: str) -> None:
        if self._metrics is not None:
            self._metrics.webhook_retries.labels(kind).inc()


def describe_url(url: str) -> str:
    """Where a webhook points, for logs and audit entries: scheme, host, port and path, never
    the credentials or query string a URL may carry."""
    target = httpx.URL(url)
    port = f":{target.port}" if target.port else ""
    return f"{target.scheme}://{target.host}{port}{target.path}"


def signing_key(secret: str) -> bytes:
    """The HMAC key of a secret: `whsec_<base64>` decoded, any other its UTF-8 bytes."""
    if secret.startswith("whsec_"):
        return base64.b64decode(secret.removeprefix("whsec_"))
    return secret.encode()


def sign(key: bytes, message_id: str, timestamp: str, payload: bytes) -> str:
    """The `webhook-signature` value of one attempt."""
    signed = f"{message_id}.{timestamp}.".encode() + payload
    return "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()


def verify(
    secret: str, headers: Mapping[str, str], payload: bytes, *, now: float | None = None
) -> bool:
    """Whether a delivery is authentic and recent (the receiver's side): its signature
    matches one of the header's `v1,` signatures and its timestamp is within five minutes."""
    try:
        message_id = headers["webhook-id"]
        timestamp = headers["webhook-timestamp"]
        offered = headers["webhook-signature"].split()
        age = abs((time.time() if now is None else now) - int(timestamp))
    except (KeyError, ValueError):
        return False
    expected = sign(signing_key(secret), message_id, timestamp, payload)
    fresh = age <= TOLERANCE_SECONDS
    return fresh and any(hmac.compare_digest(expected, value) for value in offered)


def _outcome(response: httpx.Response | None) -> str:
    if response is None:
        return "unreachable"
    return "delivered" if response.is_success else "refused"
