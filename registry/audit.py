"""The audit log's entries, their hash chain, and how a stored log is read back and checked.

Each entry carries the sha256 of the one before, over a canonical encoding of every field,
so modifying or removing an entry breaks the chain at that point. Removing entries from the
end is caught by the separately stored head (sequence and hash of the last entry).

The log itself is the truth; the head is a check on it. A writer chains each new entry onto
the last entry it can read and numbers it past both that entry and the recorded head
(`chain_head`), so a crash between appending an entry and recording the head costs nothing,
and no sequence number is ever given twice. Both backends read back through `read_log`, so
an unreadable entry or head is reported by `verify_log`, never raised.

A store that lost its log (a Redis restarted without persistence) is given it back by a
gateway that knew its head (`registry.restoration`): the log then begins with a `RESTORED`
entry chained onto that head, and is checked from there, its earlier entries being gone.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

import msgspec

GENESIS = "0" * 64
RESTORED = "state.restored"  # the action of an entry restoring a store that lost its state


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


class AuditLog(msgspec.Struct, frozen=True, kw_only=True):
    """A stored audit log as read back, damage included."""

    entries: list[AuditEntry]  # every readable entry, oldest first
    head: AuditHead | None = None  # as recorded apart from the log; None if absent
    unreadable: tuple[tuple[int, str], ...] = ()  # (position in the log, why) per bad record
    head_problem: str | None = None  # why the recorded head cannot be read


class Verdict(msgspec.Struct, frozen=True, kw_only=True):
    """The result of checking a stored log."""

    first_invalid: int | None = None  # position of the first modified, removed or unreadable
    problem: str | None = None  # what is wrong, in words; None when the log is intact
    restored_after: int = 0  # seq of the last entry lost before a restoration the log begins with


_ENTRY = msgspec.json.Decoder(AuditEntry)
_HEAD = msgspec.json.Decoder(AuditHead)
# What a damaged record raises: malformed JSON or fields, bytes that are not UTF-8, nesting
# past the decoder's recursion.
_UNREADABLE = (msgspec.DecodeError, ValueError, RecursionError)


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


def chain_head(newest_first: Iterable[bytes], recorded: AuditHead | None) -> AuditHead:
    """Where the next entry chains on, from the log's records read newest first (only as
    many as it takes to find a readable one) and the recorded head.

    The hash is the last readable entry's. The sequence number counts every record after
    that entry too, and is never below the recorded head's, so it is never reused, even
    when damage or a truncation has hidden the entry that last took it.
    """
    skipped = 0
    last = AuditHead()
    for data in newest_first:
        try:
            entry = _ENTRY.decode(data)
        except _UNREADABLE:
            skipped += 1
            continue
        last = AuditHead(seq=entry.seq, hash=entry.hash)
        break
    seq = max(last.seq + skipped, recorded.seq if recorded is not None else 0)
    return AuditHead(seq=seq, hash=last.hash)


def decode_head(data: bytes) -> AuditHead:
    """A recorded head; raises `ValueError` naming the problem when it is unreadable."""
    try:
        return _HEAD.decode(data)
    except _UNREADABLE as exc:
        raise ValueError(f"not an audit head ({exc})") from exc


def read_log(records: Iterable[tuple[str, bytes]], head: bytes | None, head_name: str) -> AuditLog:
    """Decode stored records, each given as (where it is, for messages; its bytes), and
    the recorded head (None when there is none), keeping what cannot be read as damage."""
    entries: list[AuditEntry] = []
    unreadable: list[tuple[int, str]] = []
    for position, (where, data) in enumerate(records):
        try:
            entries.append(_ENTRY.decode(data))
        except _UNREADABLE as exc:
            unreadable.append((position, f"{where} is not a readable audit entry ({exc})"))
    recorded, head_problem = None, None
    if head is not None:
        try:
            recorded = decode_head(head)
        except ValueError as exc:
            head_problem = f"{head_name} is {exc}; the next change rewrites it"
    return AuditLog(
        entries=entries, head=recorded, unreadable=tuple(unreadable), head_problem=head_problem
    )


def verify_log(log: AuditLog) -> Verdict:
    """The first thing wrong with a stored log: a modified, removed or unreadable entry, a
    log cut short of its head, or an unreadable head."""
    if log.unreadable:
        position, why = log.unreadable[0]
        # Before the first unreadable record, positions in the log are indexes of entries.
        broken = _first_break(log.entries[:position], None)
        return Verdict(first_invalid=position, problem=why) if broken is None else broken
    broken = _first_break(log.entries, log.head)
    if broken is not None:
        return broken
    if log.head_problem is not None:
        return Verdict(problem=log.head_problem)
    return Verdict(restored_after=_start(log.entries).seq)


def verify_chain(entries: Sequence[AuditEntry], head: AuditHead | None = None) -> int | None:
    """Index of the first entry that was modified or removed (or where the chain falls short
    of `head`); None when the whole chain is intact."""
    broken = _first_break(entries, head)
    return None if broken is None else broken.first_invalid


def _start(entries: Sequence[AuditEntry]) -> AuditHead:
    """What the first entry must follow: the genesis, or, for a log that begins with a
    restoration, the head of the lost log it continues. Only the first entry may do so: a
    restoration later in a log is chained like any other entry."""
    if entries and entries[0].action == RESTORED:
        return AuditHead(seq=entries[0].seq - 1, hash=entries[0].prev_hash)
    return AuditHead()


def _first_break(entries: Sequence[AuditEntry], head: AuditHead | None) -> Verdict | None:
    previous = _start(entries)
    for index, entry in enumerate(entries):
        fields = msgspec.structs.asdict(entry)
        claimed = fields.pop("hash")
        fields["time"] = entry.time
        if claimed != _digest(fields):
            problem = f"entry {index} (seq {entry.seq}) does not match its hash: it was modified"
        elif entry.seq != previous.seq + 1 or entry.prev_hash != previous.hash:
            problem = (
                f"entry {index} (seq {entry.seq}) does not follow seq {previous.seq}: an entry "
                "before it was removed or modified"
            )
        else:
            previous = AuditHead(seq=entry.seq, hash=entry.hash)
            continue
        return Verdict(first_invalid=index, problem=problem)
    if head is not None and (
        head.seq > previous.seq or (head.seq == previous.seq and head.hash != previous.hash)
    ):
        return Verdict(
            first_invalid=len(entries),
            problem=f"the log ends at seq {previous.seq} but its head records seq {head.seq}: "
            "entries were removed from its end",
        )
    return None


def _digest(fields: dict[str, Any]) -> str:
    canonical = msgspec.json.encode(fields, order="sorted")
    return hashlib.sha256(canonical).hexdigest()
