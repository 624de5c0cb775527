"""Logging: one format for every record of a gateway process (its own, Litestar's and
uvicorn's), in every worker, with secrets taken out.

`text` writes one readable line per record, with the call's fields (below) appended as
`key=value`; `json` writes one JSON object per line: `time` (ISO 8601, UTC), `level`,
`logger`, `message`, and the fields the record knows: `request_id`, `trace_id`, `span_id`,
`model`, `version`, `role`, `method`, `path`, `status`, `latency_ms` (and `exception` with
a traceback). The request path passes its fields with `extra=` where it logs, so calls that
log nothing pay nothing; the trace and span ids come from the OpenTelemetry context of the
code that logs (tracing on), or, in the access log, from the caller's `traceparent`.

The access log (`driftgate.access`, one line per infer call) goes through a bounded queue to
a thread that formats and writes it, so the event loop never waits on a slow stream; when
the thread falls behind, lines are dropped and counted. Every line, in either format, is
cleaned of the secrets the settings hold (token secrets, the export hash key, the Redis
password, the retraining webhook's credentials and query) and of any URL's credentials and
query string.
"""

from __future__ import annotations

import logging
import queue
import re
import sys
from collections.abc import Iterable
from datetime import UTC, datetime
from logging.handlers import QueueHandler, QueueListener
from typing import Any, TextIO
from urllib.parse import parse_qsl, urlsplit

import msgspec
from opentelemetry.trace import format_span_id, format_trace_id, get_current_span

from gateway.settings import Settings
from gateway.tokens import parse_tokens

ACCESS_LOGGER = "driftgate.access"
ACCESS_QUEUE = 10_000
"""Access lines waiting for the writer thread; past it they are dropped (and counted)."""
FIELDS = (
    "request_id",
    "trace_id",
    "span_id",
    "model",
    "version",
    "role",
    "method",
    "path",
    "status",
    "latency_ms",
)
"""What a record may carry about its call (`extra=`), in the order they are written."""
TEXT_FIELDS = ("model", "version", "role", "request_id", "trace_id")
"""Those a text line appends (an access line's message already has the others)."""
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
MIN_SECRET = 4  # characters: shorter values would blank ordinary words (and are no secret)
_URL = re.compile(
    r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)(?P<userinfo>[^\s/?#@'\"<>]*@)?"
    r"(?P<rest>[^\s?#'\"<>]*)(?P<query>\?[^\s#'\"<>]*)?(?P<fragment>#[^\s'\"<>]*)?"
)
_CONTROL = str.maketrans({"\n": "\\n", "\r": "\\r"})  # one record, one line


def configure(settings: Settings, stream: TextIO | None = None) -> None:
    """Send every record to `stream` (stderr) in `settings.log_format`, at
    `settings.log_level`, with the access log when `settings.access_log`. Called by each
    process at start (again by the same process: it replaces what it set before)."""
    stream = sys.stderr if stream is None else stream
    redact = Redactor.of(settings)
    formatter: logging.Formatter = (
        JsonFormatter(redact) if settings.log_format == "json" else TextFormatter(redact)
    )
    root = logging.getLogger()
    for old in [handler for handler in root.handlers if isinstance(handler, _Handler)]:
        root.removeHandler(old)
    handler = _Handler(stream)
    handler.setFormatter(formatter)
    handler.addFilter(TraceContext())
    root.addHandler(handler)
    root.setLevel(settings.log_level.upper())
    logging.captureWarnings(True)  # Python's warnings too, as records of `py.warnings`
    access = logging.getLogger(ACCESS_LOGGER)
    for stale in [each for each in access.handlers if isinstance(each, AccessHandler)]:
        access.removeHandler(stale)
        stale.close()
    if settings.access_log:
        writer = logging.StreamHandler(stream)
        writer.setFormatter(formatter)
        queued = AccessHandler(writer, capacity=ACCESS_QUEUE)
        queued.addFilter(TraceContext())  # in the caller's thread, where its context is
        access.addHandler(queued)
        access.setLevel(logging.INFO)
        access.propagate = False


class _Handler(logging.StreamHandler):  # type: ignore[type-arg]
    """The root handler `configure` installs (and replaces when called again)."""


class TraceContext(logging.Filter):
    """Stamps a record with the trace and span ids of the span current where it is logged."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Add `trace_id` and `span_id` when a span is current; never drops a record."""
        if not hasattr(record, "trace_id"):
            context = get_current_span().get_span_context()
            if context.is_valid:
                record.trace_id = format_trace_id(context.trace_id)
                record.span_id = format_span_id(context.span_id)
        return True


class Redactor:
    """Takes secrets out of log text: given values, and the credentials and query string of
    any URL (`scheme://user:password@host/path?query` -> `scheme://***@host/path?***`)."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        # Longest first: a secret containing another is blanked whole.
        found = {secret for secret in secrets if len(secret) >= MIN_SECRET}
        self._secrets = tuple(sorted(found, key=len, reverse=True))

    @classmethod
    def of(cls, settings: Settings) -> Redactor:
        """A redactor of the secrets in `settings` (see `gateway.settings.SECRET_FIELDS`)."""
        secrets = [token.secret for token in parse_tokens(settings.tokens)]
        secrets.append(settings.export_hash_key)
        for url in (settings.redis_url, settings.retraining_webhook):
            parts = urlsplit(url)
            secrets += [parts.username or "", parts.password or "", parts.query]
            secrets += [value for _, value in parse_qsl(parts.query)]
        return cls(secrets)

    def __call__(self, text: str) -> str:
        """`text` without the secrets."""
        if "://" in text:
            text = _URL.sub(_clean_url, text)
        for secret in self._secrets:
            if secret in text:
                text = text.replace(secret, "***")
        return text


def _clean_url(match: re.Match[str]) -> str:
    return "".join(
        [
            match["scheme"],
            "***@" if match["userinfo"] else "",
            match["rest"],
            "?***" if match["query"] else "",
        ]
    )


class TextFormatter(logging.Formatter):
    """One line per record: time, level, logger, message, then the call's `key=value`s."""

    def __init__(self, redact: Redactor) -> None:
        super().__init__(TEXT_FORMAT)
        self._redact = redact

    def formatMessage(self, record: logging.LogRecord) -> str:  # noqa: N802 (logging's name)
        """The line, before any traceback."""
        line = super().formatMessage(record).translate(_CONTROL)
        fields = [f"{name}={value}" for name, value in _fields(record, TEXT_FIELDS)]
        return self._redact(" ".join([line, *fields]) if fields else line)

    def formatException(self, ei: Any) -> str:  # noqa: N802 (logging's name)
        """The traceback, without secrets."""
        return self._redact(super().formatException(ei))


class JsonFormatter(logging.Formatter):
    """One JSON object per record (see the module docstring for its keys)."""

    def __init__(self, redact: Redactor) -> None:
        super().__init__()
        self._redact = redact
        self._encoder = msgspec.json.Encoder(enc_hook=str)

    def format(self, record: logging.LogRecord) -> str:
        """The record as one line of JSON."""
        entry: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC)
            .isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": self._redact(record.getMessage()),
        }
        entry.update(_fields(record, FIELDS))
        if record.exc_info:
            entry["exception"] = self._redact(self.formatException(record.exc_info))
        elif record.exc_text:
            entry["exception"] = self._redact(record.exc_text)
        if record.stack_info:
            entry["stack"] = self._redact(self.formatStack(record.stack_info))
        return self._encoder.encode(entry).decode()


def _fields(record: logging.LogRecord, names: tuple[str, ...]) -> list[tuple[str, object]]:
    values = record.__dict__
    return [(name, values[name]) for name in names if values.get(name) is not None]


class AccessHandler(QueueHandler):
    """Hands records to a thread that writes them with `target`, through a bounded queue:
    the caller never waits on the stream. Records that find the queue full are dropped and
    counted in `dropped`; closing writes what is queued, then stops the thread."""

    def __init__(self, target: logging.Handler, *, capacity: int) -> None:
        records: queue.Queue[logging.LogRecord | None] = queue.Queue(capacity)
        super().__init__(records)
        self.dropped = 0
        self._listener = _Listener(records, target)
        self._listener.start()
        self._running = True

    def prepare(self, record: logging.LogRecord) -> logging.LogRecord:
        """The record as it is: formatted by the thread (its fields are plain values)."""
        return record

    def enqueue(self, record: logging.LogRecord) -> None:
        """Queue without waiting; drop (counted) when the writer is behind."""
        try:
            self.queue.put_nowait(record)
        except queue.Full:
            self.dropped += 1

    def close(self) -> None:
        """Write what is queued, stop the thread, and say how many lines were dropped."""
        if self._running:  # close() may come twice: here, then at interpreter exit
            self._running = False
            self._listener.stop()
        if self.dropped:
            logging.getLogger(__name__).warning(
                "%d access log lines were dropped: the log stream was too slow", self.dropped
            )
        super().close()


class _Listener(QueueListener):
    def __init__(
        self, records: queue.Queue[logging.LogRecord | None], target: logging.Handler
    ) -> None:
        super().__init__(records, target)
        self._records = records

    def enqueue_sentinel(self) -> None:
        self._records.put(None)  # QueueListener's sentinel; waits for room, never fails
