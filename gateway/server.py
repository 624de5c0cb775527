"""The HTTP server: uvicorn with uvloop and httptools, bounded so that no client can hold
more than its share.

uvicorn itself bounds connections (`limit_concurrency`: requests past it are answered 503)
and idle kept-alive connections (`timeout_keep_alive`). Its httptools protocol has no bound
on a request's header size or count and no timeout on reading a request, headers or body:
httptools keeps an unfinished header in memory however long it grows, and a slow or silent
client keeps its connection, and its slot, for ever. `BoundedHttpToolsProtocol` adds:

- header bytes and fields: past `max_header_bytes` (headers unfinished or complete) or
  `max_headers` fields the request is answered 431 and its connection closed, before the
  app sees it;
- a header timeout: the request line and headers must arrive within `header_timeout`
  seconds of the connection's opening, or of the request's first byte on a kept-alive
  connection;
- a body timeout: the body must arrive within `body_timeout` seconds plus one second per
  `min_body_rate` bytes received, so a large upload at a fair speed completes while a
  trickle is cut off.

A timed-out connection is closed. One timer per connection checks the deadlines every
quarter of the shorter timeout while a request is being read, and stops while the app
works or the connection idles (uvicorn's keep-alive timer covers that), so a busy
connection adds no timer per request.
"""

from __future__ import annotations

import asyncio
import functools
import os
import shutil
from typing import Any, cast

import msgspec
import uvicorn
from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol
from uvicorn.server import ServerState

from gateway import scratch
from gateway.logs import configure as configure_logging
from gateway.protocol import ErrorResponse
from gateway.settings import Settings
from gateway.telemetry import MULTIPROC_ENV

METRICS_PREFIX = "driftgate-metrics-"
_HEADERS, _BODY, _IDLE = "headers", "body", "idle"  # what a connection is reading


class ServerLimits(msgspec.Struct, frozen=True, kw_only=True):
    """What one connection may take (see the settings of the same names)."""

    max_header_bytes: int
    max_headers: int
    header_timeout: float
    body_timeout: float
    min_body_rate: int

    @classmethod
    def of(cls, settings: Settings) -> ServerLimits:
        """The limits `settings` ask for."""
        return cls(
            max_header_bytes=settings.max_header_bytes,
            max_headers=settings.max_headers,
            header_timeout=settings.header_timeout_seconds,
            body_timeout=settings.body_timeout_seconds,
            min_body_rate=settings.min_body_rate,
        )


class BoundedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with bounded headers and read timeouts (see above)."""

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
        *,
        limits: ServerLimits,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self._limits = limits
        self._tick = min(limits.header_timeout, limits.body_timeout) / 4
        self._watchdog: asyncio.TimerHandle | None = None
        self._phase = _HEADERS
        self._deadline = 0.0
        # Bytes read on this connection; the chunk being parsed; and where the chunk in
        # which the current request began starts and ends (httptools gives no offsets).
        self._read = 0
        self._chunk = 0
        self._begin_start = 0
        self._begin_end = 0
        self._body_bytes = 0
        self._refused = False

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        """Start the header deadline from the connection's opening."""
        super().connection_made(transport)
        self._enter(_HEADERS, self._limits.header_timeout)

    def connection_lost(self, exc: Exception | None) -> None:
        """Stop the watchdog with the connection."""
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        """Parse, then bound an unfinished header (httptools buffers it whole)."""
        if self._refused:
            return
        self._chunk = len(data)
        self._read += len(data)
        super().data_received(data)
        # While the headers are unfinished, the chunks after the one that began the request
        # are header bytes throughout: a lower bound, so the memory held stays under the
        # limit plus one read, and no request within the limit is refused.
        if (
            self._phase == _HEADERS
            and self._read - self._begin_end > self._limits.max_header_bytes
            and not self.transport.is_closing()
        ):
            self._refuse_headers()

    def on_message_begin(self) -> None:
        """A request begins; on a kept-alive connection, its header deadline starts now."""
        super().on_message_begin()
        self._begin_start, self._begin_end = self._read - self._chunk, self._read
        if self._phase != _HEADERS:
            self._enter(_HEADERS, self._limits.header_timeout)

    def on_headers_complete(self) -> None:
        """Check the complete headers against the limits, then start the body deadline."""
        if self._refused:
            return
        if len(self.headers) > self._limits.max_headers:
            self._refuse(
                431,
                f"the request has {len(self.headers)} header fields; the limit is "
                f"{self._limits.max_headers}",
            )
            return
        # Only a request whose headers could be over the limit (the bytes read since the
        # chunk it began in) pays for measuring them.
        if self._read - self._begin_start > self._limits.max_header_bytes and (
            len(self.url) + sum(len(name) + len(value) for name, value in self.headers)
            > self._limits.max_header_bytes
        ):
            self._refuse_headers()
            return
        self._body_bytes = 0
        self._enter(_BODY, self._limits.body_timeout)
        super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        """Count the body toward its deadline's extension."""
        if not self._refused:
            self._body_bytes += len(body)
            super().on_body(body)

    def on_message_complete(self) -> None:
        """The request is read: no deadline until the next one begins."""
        if not self._refused:
            self._phase = _IDLE
            super().on_message_complete()

    def _enter(self, phase: str, seconds: float) -> None:
        self._phase = phase
        self._deadline = self.loop.time() + seconds
        if self._watchdog is None:
            self._watchdog = self.loop.call_later(self._tick, self._check)

    def _check(self) -> None:
        self._watchdog = None
        if self._phase == _IDLE or self.transport.is_closing():
            return
        deadline = self._deadline
        if self._phase == _BODY:
            if self.flow.read_paused:  # the app is behind, not the client: not its time
                self._deadline += self._tick
            deadline = self._deadline + self._body_bytes / self._limits.min_body_rate
        if self.loop.time() >= deadline:
            self.transport.close()  # the app, if it was reading a body, sees a disconnect
            return
        self._watchdog = self.loop.call_later(self._tick, self._check)

    def _refuse_headers(self) -> None:
        self._refuse(
            431, f"the request's line and headers are over {self._limits.max_header_bytes} bytes"
        )

    def _refuse(self, status: int, message: str) -> None:
        """Answer `status` with an error body and close, without the app seeing the call."""
        self._refused = True
        body = msgspec.json.encode(ErrorResponse(error=message))
        self.transport.write(
            b"".join(
                [
                    STATUS_LINE[status],
                    b"content-type: application/json\r\n",
                    b"content-length: %d\r\n" % len(body),
                    b"connection: close\r\n\r\n",
                    body,
                ]
            )
        )
        self.transport.close()


def serve(settings: Settings) -> None:
    """Run the gateway until it is stopped: `settings.workers` processes, each serving
    `gateway.app:app_from_environment` (workers read their settings from `DRIFTGATE_*`
    variables, which the caller sets). With several workers, their metrics are merged
    through a scratch directory, removed when the server stops (or, after a crash, at
    the next start). Logging is set up by `gateway.logs`, in this process and in each
    worker (uvicorn's own records included: uvicorn is given no logging configuration)."""
    configure_logging(settings)
    metrics_dir = None
    if settings.workers > 1 and MULTIPROC_ENV not in os.environ:
        scratch.sweep(METRICS_PREFIX)
        # Before any worker imports prometheus_client: their metrics go to shared files.
        metrics_dir = scratch.make(METRICS_PREFIX)
        os.environ[MULTIPROC_ENV] = str(metrics_dir)
    # uvicorn makes its protocol by calling `http` like a class; a factory bound to the
    # limits does the same, and pickles for the worker processes.
    protocol = functools.partial(BoundedHttpToolsProtocol, limits=ServerLimits.of(settings))
    try:
        uvicorn.run(
            "gateway.app:app_from_environment",
            factory=True,
            host=settings.host,
            port=settings.port,
            workers=settings.workers,
            loop="uvloop",
            http=cast(type[asyncio.Protocol], protocol),
            ws="none",  # no WebSocket routes: an upgrade is not worth a parser
            limit_concurrency=settings.max_connections,
            timeout_keep_alive=settings.keep_alive_seconds,
            log_config=None,  # its records go to the root logger, in our format
            log_level=settings.log_level,
            access_log=False,  # the infer calls' own access log is `settings.access_log`
            ssl_certfile=settings.tls_cert_file or None,  # gRPC's TLS: gateway.grpc.server
            ssl_keyfile=settings.tls_key_file or None,
        )
    finally:
        if metrics_dir is not None:
            shutil.rmtree(metrics_dir, ignore_errors=True)
            del os.environ[MULTIPROC_ENV]
