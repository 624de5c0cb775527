"""The audit log's entries and their hash chain.

Each entry carries the sha256 of the one before, over a canonical encoding of every field,
so modifying or removing an entry breaks the chain at that point. Removing entries from the
end is caught by the separately stored head (sequence and hash of the last entry).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import msgspec

GENESIS = "0" * 64


class AuditEntry(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """One change: who did what to which model, why, and the state before and after."""

    seq: int
    time: datetime
    actor: str  # token name, user, or "controller"
    action: str  # e.g. "deployment.set", "deployment.promote", "model.register"
    model: str
    reason: str = ""
    before: Any = None
    after: Any = None
    prev_hash: str
    hash: str


class AuditHead(msgspec.Struct, frozen=True, kw_only=True):
    """Sequence number and hash of the last entry: what the chain must end with."""

    seq: int = 0
    hash: str = GENESIS


def next_entry(
    head: AuditHead,
    *,
    actor: str,
    action: str,
    model: str,
    reason: str = "",
    before: Any = None,
    after: Any = None,
    time: datetime | None = None,
) -> AuditEntry:
    """The entry that follows `head`, its hash computed over all of its fields."""
    fields = {
        "seq": head.seq + 1,
        "time": time or datetime.now(UTC),
        "actor": actor,
        "action": action,
        "model": model,
        "reason": reason,
        "before": msgspec.to_builtins(before),
        "after": msgspec.to_builtins(after),
        "prev_hash": head.hash,
    }
    return AuditEntry(**fields, hash=_digest(fields))


def verify_chain(entries: Sequence[AuditEntry], head: AuditHead | None = None) -> int | None:
    """Index of the first entry that was modified or removed (or where the chain falls short
    of `head`); None when the whole chain is intact."""
    previous = AuditHead()
    for index, entry in enumerate(entries):
        fields = msgspec.structs.asdict(entry)
        claimed = fields.pop("hash")
        fields["time"] = entry.time
        if (
            entry.seq != previous.seq + 1
            or entry.prev_hash != previous.hash
            or claimed != _digest(fields)
        ):
            return index
        previous = AuditHead(seq=entry.seq, hash=entry.hash)
    if head is not None and (
        head.seq > previous.seq or (head.seq == previous.seq and head.hash != previous.hash)
    ):
        return len(entries)
    return None


def _digest(fields: dict[str, Any]) -> str:
    canonical = msgspec.json.encode(fields, order="sorted")
    return hashlib.sha256(canonical).hexdigest()
