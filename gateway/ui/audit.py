"""What the audit page shows: the hash-chained log, filtered, newest first, in words.

The filtering and the chain's verification are `/admin/audit`'s own (`audit_report`); this
module only turns its entries into rows a person reads.
"""

from __future__ import annotations

import re
from typing import Any

import msgspec

from gateway.admin import audit_report
from registry.audit import AuditEntry, AuditLog
from registry.deployment import Deployment, describe_change

MAX_ROWS = 500  # rows one page shows; older matching entries are counted, not sent
# The controller's reasons list every gate as "GATE VERDICT: WHY", joined by "; ".
_FAILED_GATE = re.compile(r"^\S+ fail: ")


class AuditRow(msgspec.Struct, frozen=True, kw_only=True):
    """One entry of the log."""

    seq: int
    time: str  # "2024-05-01 12:00:05 UTC"
    actor: str
    action: str
    model: str
    reason: tuple[tuple[str, bool], ...]  # its parts, each with whether a gate failed in it
    change: str  # what changed, in words ("canary 2 25% -> 50%"), "" when not a deployment
    tone: str  # "status-drift" for rollbacks and aborts, "status-ok" for promotions, else ""


class AuditView(msgspec.Struct, frozen=True, kw_only=True):
    """The audit page: the verdict on the whole chain and the entries that match."""

    intact: bool
    problem: str  # what is wrong with the log, "" when it is intact
    first_invalid: int | None
    restored_after: int
    model: str  # the filters in force, "" for any
    actor: str
    rows: tuple[AuditRow, ...]  # newest first, at most MAX_ROWS
    matching: int  # entries that match the filters
    models: tuple[str, ...]  # every model and actor named in the log, for the filter lists
    actors: tuple[str, ...]


def audit_view(log: AuditLog, *, model: str = "", actor: str = "") -> AuditView:
    """The page for the entries of `model` by `actor` ("" for any)."""
    report = audit_report(log, model=model or None, actor=actor or None)
    newest = report.entries[::-1][:MAX_ROWS]
    return AuditView(
        intact=report.intact,
        problem=report.problem or "",
        first_invalid=report.first_invalid,
        restored_after=report.restored_after,
        model=model,
        actor=actor,
        rows=tuple(_row(entry) for entry in newest),
        matching=len(report.entries),
        models=tuple(sorted({entry.model for entry in log.entries if entry.model})),
        actors=tuple(sorted({entry.actor for entry in log.entries})),
    )


def _row(entry: AuditEntry) -> AuditRow:
    tone = ""
    if entry.action.endswith(("rollback", "abort")):
        tone = "status-drift"
    elif entry.action.endswith("promote"):
        tone = "status-ok"
    return AuditRow(
        seq=entry.seq,
        time=entry.time.strftime("%Y-%m-%d %H:%M:%S UTC"),
        actor=entry.actor,
        action=entry.action,
        model=entry.model,
        reason=_reason(entry.reason),
        change=_change(entry),
        tone=tone,
    )


def _reason(reason: str) -> tuple[tuple[str, bool], ...]:
    """A reason in parts, the failing gates of a rollout decision marked."""
    parts = reason.split("; ")
    if not any(_FAILED_GATE.match(part) for part in parts):
        return ((reason, False),)
    return tuple((part, bool(_FAILED_GATE.match(part))) for part in parts)


def _change(entry: AuditEntry) -> str:
    """A deployment change in words; a registration by its version; else nothing."""
    after: Any = entry.after
    if entry.action == "model.register" and isinstance(after, dict) and "version" in after:
        return f"version {after['version']} registered"
    try:
        new = msgspec.convert(after, Deployment)
        old = None if entry.before is None else msgspec.convert(entry.before, Deployment)
    except msgspec.ValidationError:
        return ""
    return describe_change(old, new)
