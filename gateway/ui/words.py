"""Numbers, times and statuses as the console writes them: one way everywhere."""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Final

NOT_AVAILABLE: Final = "n/a"
# Worst first: how features sort and which status a summary names.
SEVERITY: Final[dict[str, int]] = {"drift": 0, "warn": 1, "insufficient_data": 2, "ok": 3}
STATUS_WORDS: Final[dict[str, str]] = {"insufficient_data": "insufficient data"}


def status_class(status: str) -> str:
    """The CSS class of a drift status (`status-ok`, ...); `status-none` for the words that
    say why there is none (`not monitored`, `not evaluated yet`)."""
    return f"status-{status}" if status in SEVERITY else "status-none"


def verdict_class(verdict: str) -> str:
    """The CSS class of a gate's or an evaluation's verdict."""
    return {"pass": "status-ok", "fail": "status-drift"}.get(verdict, "status-insufficient_data")


def rollout_class(status: str) -> str:
    """The CSS class of a rollout's status."""
    return {
        "promoted": "status-ok",
        "running": "status-warn",
        "paused": "status-warn",
        "rolled_back": "status-drift",
    }.get(status, "status-none")


def moment(at: float) -> str:
    """A time as `2024-05-01 12:00:05 UTC`; "" for none (0)."""
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(at)) if at else ""


def date(at: datetime) -> str:
    """A stored datetime as `moment` writes times."""
    aware = at if at.tzinfo is not None else at.replace(tzinfo=UTC)
    return moment(aware.timestamp())


def duration(seconds: float) -> str:
    """`45 s`, `5 min`, `2 h 5 min`."""
    if seconds < 120:
        return f"{seconds:.0f} s"
    minutes = round(seconds / 60)
    if minutes < 120:
        return f"{minutes} min"
    return f"{minutes // 60} h {minutes % 60} min" if minutes % 60 else f"{minutes // 60} h"


def percent(value: float) -> str:
    """A weight or share already in percent: `25%`, `12.5%`."""
    return f"{value:g}%"


def share(value: float | None, digits: int = 1) -> str:
    """A share in [0, 1] as a percentage, `n/a` where not defined."""
    if value is None or not math.isfinite(value):
        return NOT_AVAILABLE
    return f"{value * 100:.{digits}f}%"


def number(value: float | None, digits: int = 3) -> str:
    """A figure to `digits` significant digits, `n/a` where not defined."""
    if value is None or not math.isfinite(value):
        return NOT_AVAILABLE
    return f"{value:.{digits}g}"


def p_value(value: float) -> str:
    """A p-value: `0.031`, `2.1e-07`."""
    return number(value, 2)


def seconds(value: float) -> str:
    """A latency: `12.5 ms`, `1.2 s`."""
    if not math.isfinite(value):
        return NOT_AVAILABLE
    return f"{value * 1000:.3g} ms" if value < 1 else f"{value:.3g} s"


def evidence(figures: Mapping[str, object]) -> str:
    """A gate's evidence as short `key=value` text."""
    return " ".join(f"{key}={_value(value)}" for key, value in figures.items())


def _value(value: object) -> str:
    if isinstance(value, bool) or value is None:
        return str(value).lower()
    if isinstance(value, float):
        return number(value, 4)
    return str(value)


def short_hash(digest: str) -> str:
    """The first 12 hex digits of a sha256."""
    return digest[:12]
