"""`driftgate log export`: a time range of the inference log, labels joined, as Parquet.

It reads the Parquet sink's files under the data directory (`monitor.inference_log`), so it
needs no running gateway: run it where the gateway's data directory is.
"""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from gateway.settings import Settings


def add_log_commands(commands: Any, common: argparse.ArgumentParser) -> None:
    """Add `log export` to the CLI's subcommands."""
    log = commands.add_parser("log", help="the inference log").add_subparsers(
        required=True, metavar="ACTION"
    )
    export = log.add_parser(
        "export",
        parents=[common],
        help="a model's logged calls with their labels, as one Parquet file",
        description="Rows of the calls logged in [--since, --until) with the labels that "
        "feedback sent for them (null where none): a retraining dataset.",
    )
    export.add_argument("name", help="model name")
    export.add_argument("--version", type=int, help="only this version (default: every one)")
    export.add_argument(
        "--since", type=_instant, help="ISO 8601 time or date, UTC unless it says (default: all)"
    )
    export.add_argument(
        "--until", type=_instant, help="ISO 8601 time or date, excluded (default: now)"
    )
    export.add_argument(
        "-o", "--output", type=Path, required=True, help="the Parquet file to write"
    )
    export.set_defaults(command=_export)


def _export(args: argparse.Namespace, settings: Settings) -> int:
    from monitor.inference_log import export_log  # polars: only this command needs it

    summary = export_log(
        settings.inference_log_path,
        args.name,
        args.output,
        version=args.version,
        since=args.since,
        until=args.until,
    )
    print(
        f"wrote {summary.rows} rows ({summary.labelled} labelled) from {summary.files} files "
        f"to {summary.path}"
    )
    return 0


def _instant(text: str) -> datetime:
    """An ISO 8601 time (a date is its midnight); without an offset, UTC."""
    try:
        moment = datetime.fromisoformat(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 time: {text!r}") from exc
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
