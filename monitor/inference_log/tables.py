"""Records as tables: one row per row of a request, one column per feature and output.

Columns of an inference table, in this order:

    request_id, row (its index in the request), time (UTC, microseconds), model, version,
    role, latency_seconds, routing_key, trace_id, then one column per input feature (as
    `monitor.inference_log.records.feature_columns` names and protects them), then one per
    output: `output:NAME` for `[batch]`, `output:NAME[i]` per column of `[batch, C]` (the
    names retraining exports use), a fixed-size list column for anything larger.

A label table has `request_id`, `row`, `label` (its text, as retraining exports write
labels), `status` and `time`.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from typing import Any

import numpy as np
import polars as pl

from monitor.inference_log.records import Inference, Label, Privacy, feature_columns, trace_id

TIME = pl.Datetime("us", "UTC")
Shape = tuple[tuple[str, tuple[int, ...]], ...]


def inference_tables(
    records: Iterable[Inference], privacy: Privacy
) -> dict[tuple[str, int], pl.DataFrame]:
    """The records' tables by (model, version), in arrival order within each."""
    groups: dict[tuple[str, int, Shape], list[Inference]] = defaultdict(list)
    for record in records:
        manifest = record.manifest
        groups[(manifest.name, manifest.version, _shape(record))].append(record)
    tables: dict[tuple[str, int], list[pl.DataFrame]] = defaultdict(list)
    for (model, version, _), group in groups.items():
        tables[(model, version)].append(_table(group, privacy))
    return {
        key: frames[0] if len(frames) == 1 else pl.concat(frames, how="diagonal_relaxed")
        for key, frames in tables.items()
    }


def label_table(records: Iterable[Label]) -> pl.DataFrame:
    """One row per labelled row."""
    ids: list[str] = []
    rows: list[int] = []
    labels: list[str | None] = []
    statuses: list[str] = []
    times: list[int] = []
    for record in records:
        for index, label in enumerate(record.labels):
            ids.append(record.request_id)
            rows.append(index)
            labels.append(None if label is None else str(label))
            statuses.append(record.status)
            times.append(round(record.at * 1e6))
    return pl.DataFrame(
        {
            "request_id": pl.Series(ids, dtype=pl.String),
            "row": pl.Series(rows, dtype=pl.Int32),
            "label": pl.Series(labels, dtype=pl.String),
            "status": pl.Series(statuses, dtype=pl.String),
            "time": pl.Series(times, dtype=pl.Int64).cast(TIME),
        }
    )


def _shape(record: Inference) -> Shape:
    """What must match for records' arrays to concatenate: every tensor's trailing shape."""
    return tuple(
        (name, values.shape[1:])
        for tensors in (record.inputs, record.outputs)
        for name, values in tensors.items()
    )


def _table(records: list[Inference], privacy: Privacy) -> pl.DataFrame:
    """The table of records of one version whose tensors have the same trailing shapes."""
    counts = np.array([record.rows for record in records])
    manifest = records[0].manifest
    # Each record's fields, once per row of it (most requests have one row: no gather).
    rows = None if (counts == 1).all() else np.repeat(np.arange(len(records)), counts)

    def repeat(values: list[Any], dtype: pl.DataType) -> pl.Series:
        series = pl.Series(values, dtype=dtype)
        return series if rows is None else series.gather(rows)

    columns: dict[str, pl.Series] = {
        "request_id": repeat([record.request_id for record in records], pl.String()),
        "row": pl.Series(np.concatenate([np.arange(n, dtype=np.int32) for n in counts])),
        "time": repeat([round(record.at * 1e6) for record in records], pl.Int64()).cast(TIME),
        "model": repeat([manifest.name] * len(records), pl.String()),
        "version": repeat([manifest.version] * len(records), pl.Int32()),
        "role": repeat([record.role for record in records], pl.String()),
        "latency_seconds": repeat([record.latency for record in records], pl.Float64()),
        "routing_key": repeat([record.routing_key for record in records], pl.String()),
        "trace_id": repeat([trace_id(record.span) for record in records], pl.String()),
    }
    # One array per tensor for the whole group (their trailing shapes match), then the
    # columns: a few numpy calls per feature, not per record.
    inputs = {name: _concatenate(records, "inputs", name) for name in records[0].inputs}
    for name, values in feature_columns(manifest, inputs, privacy).items():
        columns[name] = _series(name, values)
    for name in records[0].outputs:
        values = _concatenate(records, "outputs", name)
        if values.ndim == 2:
            for index in range(values.shape[1]):
                label = f"output:{name}[{index}]"
                columns[label] = _series(label, values[:, index])
        else:
            columns[f"output:{name}"] = _series(f"output:{name}", values)
    return pl.DataFrame(columns)


def _concatenate(records: list[Inference], direction: str, name: str) -> np.ndarray:
    parts = [getattr(record, direction)[name] for record in records]
    return np.concatenate(parts) if len(parts) > 1 else parts[0]


def _series(name: str, values: np.ndarray | list[Any]) -> pl.Series:
    if isinstance(values, list):  # hashed: text
        return pl.Series(name, values, dtype=pl.String)
    if values.dtype == object:  # BYTES: strings
        return pl.Series(name, values.tolist(), dtype=pl.String)
    return pl.Series(name, values)
