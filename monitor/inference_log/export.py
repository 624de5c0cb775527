"""Reading the inference log back: one model's calls over a time range, labels joined.

Rows come from the Parquet sink's files (`monitor.inference_log.parquet`), filtered by
version and by `time` in [since, until). Labels come from the same log: feedback's labels
are recorded as label events when they arrive (`_labels/`), whether or not the drift
monitor sampled their call, so the join needs no running gateway and no Redis, and it
outlives the prediction log's window (`feedback_max_age_seconds`). Each row gets the label
of its (request id, row) from the latest labels sent for that request, if they are one
per row of it (feedback checks that only for the calls the monitor sampled); rows without
one get null. The result is a retraining dataset: the features (sensitive ones as the log
wrote them), the outputs, the record fields and `label`.

Only the files of this data directory are read: replicas that do not share a volume each
export their own.
"""

from __future__ import annotations

import io
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import msgspec
import polars as pl

from monitor.inference_log.parquet import LABELS, PART, day_directories
from registry.files import replace_file


class EmptyExportError(ValueError):
    """No logged call matches: nothing is written."""


class ExportSummary(msgspec.Struct, frozen=True, kw_only=True):
    """What an export wrote."""

    path: Path
    rows: int
    labelled: int
    files: int  # log files read (labels' included)


def log_files(
    root: Path, model: str, *, version: int | None, since: datetime, until: datetime
) -> list[Path]:
    """The model's log files of the UTC days from `since` to `until` (of `version` only)."""
    files = []
    for day in day_directories(root / model, since.date(), until.date()):
        for path in sorted(day.glob("part-*.parquet")):
            match = PART.match(path.name)
            if match and (version is None or match["version"] == str(version)):
                files.append(path)
    return files


def label_files(root: Path, since: datetime) -> list[Path]:
    """Label files from the day before `since` on (labels come after their calls; the day
    before covers clocks a little apart between replicas)."""
    days = day_directories(root / LABELS, since.date() - timedelta(days=1), date.max)
    return [path for day in days for path in sorted(day.glob("part-*.parquet"))]


def read_log(
    root: Path,
    model: str,
    *,
    version: int | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> tuple[pl.DataFrame, int]:
    """The model's logged rows in [since, until) with their labels, oldest first, and how
    many files were read."""
    start = since or datetime(1970, 1, 1, tzinfo=UTC)
    end = until or datetime.now(UTC)
    files = log_files(root, model, version=version, since=start, until=end)
    if not files:
        return pl.DataFrame(), 0
    rows = pl.concat([pl.scan_parquet(path) for path in files], how="diagonal_relaxed").filter(
        (pl.col("time") >= start) & (pl.col("time") < end)
    )
    if version is not None:
        rows = rows.filter(pl.col("version") == version)
    labels = label_files(root, start)
    if labels:
        # The latest labels sent for a request, kept only if there is one per row of it:
        # a label never sampled by the monitor was never checked against its call.
        latest = (
            pl.concat([pl.scan_parquet(path) for path in labels], how="diagonal_relaxed")
            .filter(pl.col("time") == pl.col("time").max().over("request_id"))
            .with_columns(labels=pl.len().over("request_id"))
            .select("request_id", "row", "label", "labels")
        )
        rows = (
            rows.with_columns(rows=pl.col("row").max().over("request_id") + 1)
            .join(latest, on=["request_id", "row"], how="left")
            .with_columns(label=pl.when(pl.col("labels") == pl.col("rows")).then("label"))
            .drop("rows", "labels")
        )
    else:
        rows = rows.with_columns(label=pl.lit(None, dtype=pl.String))
    frame = rows.sort("time", "request_id", "row").collect()
    return frame, len(files) + len(labels)


def export_log(
    root: Path,
    model: str,
    output: Path,
    *,
    version: int | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> ExportSummary:
    """Write `read_log`'s rows to `output` (Parquet, atomically: temporary file, rename).

    Raises:
        EmptyExportError: no logged call of the model matches.
        ValueError: the files cannot be read together (a damaged file, or a column whose
            type changed between them), naming the reason.
    """
    try:
        frame, files = read_log(root, model, version=version, since=since, until=until)
    except pl.exceptions.PolarsError as exc:
        raise ValueError(f"cannot read the inference log of {model} under {root}: {exc}") from exc
    if frame.height == 0:
        which = model if version is None else f"{model} version {version}"
        raise EmptyExportError(
            f"no logged calls of {which} in that time range under {root} (is the inference "
            "log on, with inference_log_parquet, and has a file been rolled yet?)"
        )
    buffer = io.BytesIO()
    frame.write_parquet(buffer)
    output.parent.mkdir(parents=True, exist_ok=True)
    replace_file(output, buffer.getvalue())
    labelled = frame.height - frame.get_column("label").null_count()
    return ExportSummary(path=output, rows=frame.height, labelled=labelled, files=files)
