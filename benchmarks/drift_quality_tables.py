"""The drift-quality scenario's measurements as a `Report`: tables, targets, every run."""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable
from typing import Any

from benchmarks.report import Cell, Check, Machine, Report, Table, check
from benchmarks.shifts import CLEAN, SHIFTS

GROUPS = ("continuous", "tied")
WHO = ("driftgate", "peer")
Result = dict[str, Any]


def build_report(
    machine: Machine,
    options: dict[str, Any],
    results: list[Result],
    not_run: list[tuple[Cell, ...]],
) -> Report:
    """The report of `results` (one per data set, size and shift; see drift_quality)."""
    sizes = sorted({r["n"] for r in results})
    clean = [r for r in results if r["shift"] == CLEAN.name]
    shifted = [r for r in results if r["shift"] != CLEAN.name]
    pair = tuple(f"{who} n={n}" for n in sizes for who in WHO)
    delayed = [
        (n, group)
        for n in sizes
        for group in GROUPS
        if any(d["group"] == group for r in _cells(shifted, None, n) for d in r.get("delays", []))
    ]
    tables = [
        Table(
            title=f"clean controls: share of one-shot windows at warn or worse (alpha "
            f"{options['alpha']}); clean streams evaluated every n/5 rows, and the clean "
            "prefixes of the delay streams (every n/10 rows)",
            columns=(
                "data set",
                "n",
                "windows",
                "driftgate false warn",
                "peer false alarm",
                "stream evaluations",
                "at warn",
                "at drift",
                "delay prefixes at drift",
            ),
            rows=tuple(
                (
                    r["dataset"],
                    r["n"],
                    _count(r, "windows"),
                    _share([r], "driftgate"),
                    _share([r], "peer"),
                    r["streams"]["evaluations"],
                    r["streams"]["warn"],
                    r["streams"]["drift"],
                    r["prefix_drift"],
                )
                for r in clean
            ),
        ),
        *(
            Table(
                title=f"power, {group} shifted feature: share of windows at warn or worse, one "
                f"evaluation, pooled over data sets ({_covered(shifted, group)})",
                columns=("shift", *(f"{who} n={n}" for n in covered for who in WHO)),
                rows=tuple(
                    (
                        shift.name,
                        *(
                            _share(_cells(shifted, shift.name, n), who, group)
                            for n in covered
                            for who in WHO
                        ),
                    )
                    for shift in SHIFTS
                ),
            )
            for group in GROUPS
            if (covered := [n for n in sizes if _windows(shifted, n, group)])
        ),
        Table(
            title="blame precision: share of flagged features that were the shifted one",
            columns=("shift", *pair),
            rows=tuple(
                (
                    shift.name,
                    *(
                        _precision(_cells(shifted, shift.name, n), who)
                        for n in sizes
                        for who in WHO
                    ),
                )
                for shift in SHIFTS
                if shift.single
            ),
        ),
        *(
            Table(
                title=f"detection delay: median rows after the change until {status} "
                "(detected of streams); window of n evaluated every n/10 rows, given up after "
                f"{options['delay_cap_windows']} n rows",
                columns=("shift", *(f"n={n} {group}" for n, group in delayed)),
                rows=tuple(
                    (
                        shift.name,
                        *(
                            _delay(_cells(shifted, shift.name, n), group, field)
                            for n, group in delayed
                        ),
                    )
                    for shift in SHIFTS
                    if any("delays" in r for r in _cells(shifted, shift.name))
                ),
            )
            for status, field in (("drift", "rows"), ("the first warn", "warn"))
        ),
        Table(
            title="per data set (power: share of windows at warn or worse; delay: driftgate)",
            columns=(
                "data set",
                "n",
                "shift",
                "tied windows",
                "driftgate power",
                "peer power",
                "PCA flagged",
                "driftgate blame",
                "peer blame",
                "delay",
                "sampling",
            ),
            rows=tuple(
                (
                    r["dataset"],
                    r["n"],
                    r["shift"],
                    _count(r, "windows", "tied"),
                    _share([r], "driftgate"),
                    _share([r], "peer"),
                    _share([r], "driftgate", key="multivariate"),
                    _precision([r], "driftgate"),
                    _precision([r], "peer"),
                    _delay([r]),
                    "with replacement" if r["resampled"] else "",
                )
                for r in shifted
            ),
        ),
    ]
    if not_run:
        tables.append(Table(title="not run", columns=("data set", "n", "why"), rows=tuple(not_run)))
    return Report(
        scenario="drift-quality",
        machine=machine,
        options=options,
        tables=tables,
        checks=_checks(clean, options["alpha"]),
        runs=results,
    )


def _checks(clean: list[Result], alpha: float) -> list[Check]:
    windows = sum(_count(r, "windows") for r in clean)
    false_warn = sum(_count(r, "driftgate", key="alarms") for r in clean)
    false_drift = sum(r["streams"]["drift"] + r["prefix_drift"] for r in clean)
    return [
        check("clean streams: evaluations at drift", false_drift, 0, at_least=False),
        check(
            "clean windows at warn or worse, pooled",
            false_warn / windows if windows else math.nan,
            alpha,
            at_least=False,
        ),
    ]


def _cells(results: list[Result], shift: str | None, n: int | None = None) -> list[Result]:
    """The cells of `shift` (any if None) at size `n` (any if None)."""
    return [r for r in results if shift in (None, r["shift"]) and n in (None, r["n"])]


def _windows(results: list[Result], n: int, group: str) -> int:
    return sum(_count(r, "windows", group) for r in results if r["n"] == n)


def _covered(results: list[Result], group: str) -> str:
    sizes = sorted({r["n"] for r in results})
    return "; ".join(
        f"n={n}: "
        + ", ".join(
            sorted({r["dataset"] for r in results if r["n"] == n and _count(r, "windows", group)})
        )
        for n in sizes
        if any(r["n"] == n and _count(r, "windows", group) for r in results)
    )


def _count(r: Result, field: str, group: str | None = None, *, key: str = "") -> int:
    """A count of one cell, of one group or both; `key` picks within a detector's counts."""
    groups: Iterable[str] = GROUPS if group is None else (group,)
    parts = (r["groups"][g][field] for g in groups)
    return sum(part[key] if key else part for part in parts)


def _share(
    cells: list[Result], who: str, group: str | None = None, *, key: str = "alarms"
) -> float | None:
    """The share of windows whose `key` count is up (alarms: at warn or worse)."""
    windows = sum(_count(r, "windows", group) for r in cells)
    alarms = sum(_count(r, who, group, key=key) for r in cells)
    return alarms / windows if windows else None


def _precision(cells: list[Result], who: str) -> float | None:
    if not cells or not any(r["shift"] == s.name and s.single for r in cells for s in SHIFTS):
        return None
    flagged = sum(_count(r, who, key="flagged") for r in cells)
    return sum(_count(r, who, key="blamed") for r in cells) / flagged if flagged else None


def _delay(cells: list[Result], group: str | None = None, field: str = "rows") -> str | None:
    """The median delay, undetected streams counting as the longest; None if none ran."""
    delays = [d[field] for r in cells for d in r.get("delays", []) if group in (None, d["group"])]
    if not delays:
        return None
    detected = sorted(d for d in delays if d is not None)
    median = statistics.median_low([*detected, *[math.inf] * (len(delays) - len(detected))])
    share = f"({len(detected)}/{len(delays)})"
    return f"not detected {share}" if median == math.inf else f"{median:,} {share}"
