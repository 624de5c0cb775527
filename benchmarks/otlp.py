"""A minimal OTLP/HTTP trace receiver on loopback, for gateways that export their spans.

It decodes every export (so the gateway pays for a real collector's answers, nothing less)
and counts the spans; it runs in a thread of the benchmark's process, not on the server's
CPU.
"""

from __future__ import annotations

import gzip
import http.server
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from benchmarks.servers import HOST, free_port


class Receiver:
    """What the receiver has been sent."""

    def __init__(self, url: str) -> None:
        self.url = url
        """Its base URL, for `OTEL_EXPORTER_OTLP_ENDPOINT`."""
        self.exports = 0
        self.spans = 0
        self.received: list[tuple[dict[str, str], Any]] = []
        """Every span, with its resource's attributes (tests read them)."""
        self._lock = threading.Lock()

    def count(self, body: bytes) -> None:
        """Count and keep the spans of one export request."""
        request = ExportTraceServiceRequest.FromString(body)
        received = [
            ({a.key: a.value.string_value for a in rs.resource.attributes}, span)
            for rs in request.resource_spans
            for scope in rs.scope_spans
            for span in scope.spans
        ]
        with self._lock:
            self.exports += 1
            self.spans += len(received)
            self.received += received


@contextmanager
def otlp_receiver() -> Iterator[Receiver]:
    """Receive OTLP/HTTP trace exports (`POST /v1/traces`) until the block ends."""
    port = free_port()
    receiver = Receiver(f"http://{HOST}:{port}")

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            if self.headers.get("Content-Encoding") == "gzip":
                body = gzip.decompress(body)
            receiver.count(body)
            self.send_response(200)
            self.send_header("Content-Type", "application/x-protobuf")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *_: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer((HOST, port), Handler)
    thread = threading.Thread(target=server.serve_forever, name="otlp-receiver", daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()
