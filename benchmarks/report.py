"""What every scenario returns: tables, targets checked, and the machine it all ran on.

One shape for all scenarios, so `python -m benchmarks` prints and stores them alike and a
result from another day (or another machine) can be read back from its JSON and compared.
Numbers stay numbers in the JSON; only the printed table rounds them.
"""

from __future__ import annotations

import os
import platform
import subprocess
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import msgspec

Cell = str | int | float | None


class Table(msgspec.Struct, frozen=True, kw_only=True):
    """A titled table of results; the first columns name the row, the rest are measurements."""

    title: str
    columns: tuple[str, ...]
    rows: tuple[tuple[Cell, ...], ...]


class Check(msgspec.Struct, frozen=True, kw_only=True):
    """A target (from an issue) and what this run measured against it."""

    name: str
    value: float
    target: float
    at_least: bool
    """True: the value must reach the target (>=); False: it must stay under it (<=)."""
    met: bool


def check(name: str, value: float, target: float, *, at_least: bool) -> Check:
    """A `Check` with `met` decided here, so the JSON carries the verdict too."""
    met = value >= target if at_least else value <= target
    return Check(name=name, value=value, target=target, at_least=at_least, met=met)


class Machine(msgspec.Struct, frozen=True, kw_only=True):
    """Where a result came from: figures from different machines do not compare."""

    cpu_model: str
    cores: int
    python: str
    platform: str
    date: datetime
    load_average: tuple[float, float, float]
    """1, 5 and 15 minute load averages when the scenario started: other work skews figures."""
    packages: dict[str, str]
    revision: str
    """The code measured: `git describe --always --dirty` of the repository."""


def machine_info(packages: Iterable[str] = ()) -> Machine:
    """This machine, now, with the installed versions of `packages` (absent ones skipped).

    Call it before measuring, so the date and load average describe the start of the run.
    """
    versions = {}
    for name in packages:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    one, five, fifteen = os.getloadavg()
    return Machine(
        cpu_model=_cpu_model(),
        cores=os.cpu_count() or 1,
        python=platform.python_version(),
        platform=platform.platform(),
        date=datetime.now(UTC).replace(microsecond=0),
        load_average=(round(one, 2), round(five, 2), round(fifteen, 2)),
        packages=versions,
        revision=_revision(),
    )


def _revision() -> str:
    try:
        described = subprocess.run(
            ["git", "describe", "--always", "--dirty"],
            cwd=Path(__file__).parent,
            capture_output=True,
            text=True,
            check=True,
        )
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return described.stdout.strip()


def _cpu_model() -> str:
    """The model name, with family, model and clock: virtual machines often name no model."""
    fields: dict[str, str] = {}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            fields.setdefault(key.strip(), value.strip())
    except OSError:
        return platform.processor() or "unknown"
    name = fields.get("model name", "unknown")
    details = [
        f"{label} {fields[key]}"
        for key, label in (("cpu family", "family"), ("model", "model"), ("cpu MHz", "MHz"))
        if key in fields
    ]
    return f"{name} ({', '.join(details)})" if details else name


class Report(msgspec.Struct, frozen=True, kw_only=True):
    """A scenario's whole result: printed as tables, written as one JSON document."""

    scenario: str
    machine: Machine
    options: dict[str, Any]
    tables: list[Table]
    checks: list[Check]
    runs: list[Any] = []
    """Every individual measurement, for whoever wants more than the medians."""


def format_report(report: Report) -> str:
    """The report as plain-text tables, ready to print (or paste into Markdown)."""
    machine = report.machine
    lines = [
        f"{report.scenario}, {machine.date.isoformat()}, code {machine.revision}",
        f"{machine.cpu_model}, {machine.cores} cores, Python {machine.python}, "
        f"load average at start {machine.load_average[0]:.2f}",
    ]
    for table in report.tables:
        lines += ["", table.title, *_format_rows(table.columns, table.rows)]
    if report.checks:
        rows = [
            (c.name, c.value, f"{'>=' if c.at_least else '<='} {_cell(c.target)}", _verdict(c))
            for c in report.checks
        ]
        lines += ["", "targets", *_format_rows(("target", "measured", "goal", ""), rows)]
    return "\n".join(lines)


def _verdict(item: Check) -> str:
    verdict = "PASS" if item.met else "MISS"
    if not item.target:
        return verdict
    # The margin: how far past (PASS) or short of (MISS) the target, as a share of it.
    margin = (item.value - item.target) if item.at_least else (item.target - item.value)
    return f"{verdict} by {abs(margin) / item.target:.0%}"


def _format_rows(columns: Sequence[str], rows: Iterable[Sequence[Cell]]) -> list[str]:
    text = [list(columns), *([_cell(cell) for cell in row] for row in rows)]
    widths = [max(len(row[i]) for row in text) for i in range(len(columns))]
    # Text columns (the first ones) align left, numbers right.
    numeric = [all(_is_number(row[i]) for row in text[1:]) for i in range(len(columns))]
    return [
        "  ".join(
            cell.rjust(width) if right else cell.ljust(width)
            for cell, width, right in zip(row, widths, numeric, strict=True)
        ).rstrip()
        for row in text
    ]


def _cell(value: Cell) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool | str):
        return str(value)
    if isinstance(value, int):
        return f"{value:,}"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    if abs(value) >= 100:
        return f"{value:.1f}"
    return f"{value:.3g}"


def _is_number(text: str) -> bool:
    return text == "-" or text.replace(",", "").replace(".", "", 1).lstrip("-").isdigit()


def write_report(report: Report, directory: Path) -> Path:
    """Write the report as `<scenario>-<UTC time>.json` under `directory`; returns its path."""
    directory.mkdir(parents=True, exist_ok=True)
    stamp = report.machine.date.strftime("%Y%m%dT%H%M%SZ")
    path = directory / f"{report.scenario}-{stamp}.json"
    path.write_bytes(msgspec.json.format(msgspec.json.encode(report), indent=2) + b"\n")
    return path
