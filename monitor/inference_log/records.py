"""What the inference log records, and each record as a CloudEvent (JSON, structured mode).

The request path builds an `Inference` from what it already holds: the version's manifest,
references to the decoded input and output arrays, its latency, the clock and the current
span. No copy, no conversion, no I/O; everything below runs later, in the sinks' tasks.

An inference event:

    {"specversion": "1.0", "id": REQUEST_ID, "source": "/v2/models/M/versions/V",
     "type": "io.driftgate.inference", "time": RFC 3339, "datacontenttype": "application/json",
     "traceparent": W3C trace context (only inside a trace),
     "data": {"request_id", "time", "model", "version", "role", "rows",
              "inputs": {FEATURE: [one value per row]},
              "outputs": {OUTPUT: [one value (or list) per row]},
              "latency_seconds", "routing_key", "trace_id"}}

Inputs are keyed by feature name (the manifest's), so a sensitive feature can be dropped or
hashed (`monitor.privacy`) whichever layout the model takes. A label event (`type`
`io.driftgate.label`, `source` `/v1/feedback`, a fresh `id`) carries `request_id`, `labels`
(one per row) and `status` (`joined`, `unknown` or `expired`, as feedback answered).
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import msgspec
import numpy as np
from opentelemetry.trace import SpanContext

from monitor.privacy import Sensitive, protect_sensitive
from registry.manifest import Manifest

INFERENCE_TYPE = "io.driftgate.inference"
LABEL_TYPE = "io.driftgate.label"
_ENCODER = msgspec.json.Encoder()


class Privacy(msgspec.Struct, frozen=True, kw_only=True):
    """How sensitive features leave the gateway (the `export_*` settings)."""

    sensitive: Sensitive = "drop"
    hash_key: str = ""


class Inference(msgspec.Struct):
    """One recorded call, as the request path hands it over (references only)."""

    manifest: Manifest
    role: str
    request_id: str | None
    routing_key: str | None  # the key the router hashed: `x-routing-key`, else the request id
    inputs: Mapping[str, np.ndarray]
    outputs: Mapping[str, np.ndarray]
    latency: float  # seconds inside the gateway
    at: float  # seconds since the epoch
    span: SpanContext  # the current span's (invalid outside a trace)
    event: bytes | None = None  # the encoded CloudEvent, once a sink asked for it

    @property
    def rows(self) -> int:
        """Rows (the batch dimension) of the request."""
        return next(iter(self.inputs.values())).shape[0] if self.inputs else 0


class Label(msgspec.Struct):
    """Ground truth sent for an earlier request (one label per row)."""

    request_id: str
    labels: list[Any]
    status: str  # joined, unknown or expired
    at: float
    event: bytes | None = None


Record = Inference | Label


def trace_id(span: SpanContext) -> str | None:
    """The W3C trace id (32 hex digits) of a valid span context, else None."""
    return format(span.trace_id, "032x") if span.is_valid else None


def feature_columns(
    manifest: Manifest, inputs: Mapping[str, np.ndarray], privacy: Privacy
) -> dict[str, np.ndarray | list[Any]]:
    """The inputs as feature name -> one value per row, sensitive features protected.

    A matrix input whose width is not the number of features (a variable width) cannot be
    split into features: it is kept whole under its input name, or left out altogether
    when the version has sensitive features (which of its columns they are is unknown).
    """
    features = manifest.features
    columns: dict[str, np.ndarray | list[Any]] = {}
    if features.layout == "matrix":
        for name, matrix in inputs.items():
            table = matrix.reshape(matrix.shape[0], -1)
            if table.shape[1] == len(features.names):
                columns.update((feature, table[:, i]) for i, feature in enumerate(features.names))
            elif not manifest.sensitive:
                columns[name] = matrix
    else:
        for name in features.names:
            values = inputs[name]
            table = values.reshape(values.shape[0], -1)
            columns[name] = table[:, 0] if table.shape[1] == 1 else table
    if privacy.sensitive == "hash":
        for name in manifest.sensitive:
            if name in columns:
                columns[name] = hashable(columns[name])
    protect_sensitive(columns, manifest.sensitive, privacy.sensitive, privacy.hash_key)
    return columns


def hashable(values: np.ndarray | list[Any]) -> list[Any]:
    """Values as the text that retraining exports hash: numbers as floats (`3` is `3.0`),
    booleans as `true`/`false`, missing (NaN) as None; so one value is one token in both."""
    if isinstance(values, list):
        return values
    if values.dtype.kind == "b" and values.ndim == 1:
        return ["true" if value else "false" for value in values.tolist()]
    if values.dtype.kind in "iuf" and values.ndim == 1:
        floats = values.astype(np.float64)
        return [None if math.isnan(value) else value for value in floats.tolist()]
    plain: list[Any] = values.tolist()
    return plain


def encode_event(record: Record, privacy: Privacy) -> bytes:
    """The record's CloudEvent as JSON, encoded once (kept on the record for other sinks)."""
    if record.event is None:
        record.event = _ENCODER.encode(
            _inference_event(record, privacy)
            if isinstance(record, Inference)
            else _label_event(record)
        )
    return record.event


def _inference_event(record: Inference, privacy: Privacy) -> dict[str, Any]:
    manifest = record.manifest
    at = _rfc3339(record.at)
    event: dict[str, Any] = {
        "specversion": "1.0",
        "id": record.request_id or uuid.uuid4().hex,  # a request without an id gets one
        "source": f"/v2/models/{manifest.name}/versions/{manifest.version}",
        "type": INFERENCE_TYPE,
        "time": at,
        "datacontenttype": "application/json",
    }
    span = record.span
    if span.is_valid:  # the CloudEvents distributed-tracing extension
        event["traceparent"] = (
            f"00-{span.trace_id:032x}-{span.span_id:016x}-{int(span.trace_flags):02x}"
        )
    event["data"] = {
        "request_id": record.request_id,
        "time": at,
        "model": manifest.name,
        "version": manifest.version,
        "role": record.role,
        "rows": record.rows,
        "inputs": _input_lists(manifest, record.inputs, privacy),
        "outputs": {name: values.tolist() for name, values in record.outputs.items()},
        "latency_seconds": record.latency,
        "routing_key": record.routing_key,
        "trace_id": trace_id(span),
    }
    return event


def _label_event(record: Label) -> dict[str, Any]:
    at = _rfc3339(record.at)
    return {
        "specversion": "1.0",
        "id": uuid.uuid4().hex,
        "source": "/v1/feedback",
        "type": LABEL_TYPE,
        "time": at,
        "datacontenttype": "application/json",
        "data": {
            "request_id": record.request_id,
            "time": at,
            "labels": record.labels,
            "status": record.status,
        },
    }


def _input_lists(
    manifest: Manifest, inputs: Mapping[str, np.ndarray], privacy: Privacy
) -> dict[str, list[Any]]:
    """The inputs by feature, as lists; the common case (one matrix, no sensitive feature)
    in one conversion rather than one per feature."""
    names = manifest.features.names
    if manifest.features.layout == "matrix" and not manifest.sensitive and len(inputs) == 1:
        (matrix,) = inputs.values()
        table = matrix.reshape(matrix.shape[0], -1)
        if table.shape[1] == len(names):
            return dict(zip(names, table.T.tolist(), strict=True))
    columns = feature_columns(manifest, inputs, privacy)
    return {name: _plain(values) for name, values in columns.items()}


def _plain(values: np.ndarray | list[Any]) -> list[Any]:
    return values if isinstance(values, list) else values.tolist()


def _rfc3339(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).isoformat().replace("+00:00", "Z")
