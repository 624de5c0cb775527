"""The audit log's hash chain: any modified or removed entry is found."""

from __future__ import annotations

import msgspec
import pytest

from registry.audit import AuditEntry, AuditHead, next_entry, verify_chain


def _chain(length: int) -> list[AuditEntry]:
    entries: list[AuditEntry] = []
    head = AuditHead()
    for index in range(length):
        entry = next_entry(
            head,
            actor="alice",
            action="deployment.set",
            model="m",
            reason=f"step {index}",
            before={"stable": index},
            after={"stable": index + 1},
        )
        entries.append(entry)
        head = AuditHead(seq=entry.seq, hash=entry.hash)
    return entries


def test_an_intact_chain_verifies() -> None:
    entries = _chain(5)
    assert verify_chain(entries, AuditHead(seq=5, hash=entries[-1].hash)) is None
    assert verify_chain([]) is None


@pytest.mark.parametrize("index", [0, 2, 4])
def test_a_modified_entry_is_reported(index: int) -> None:
    entries = _chain(5)
    entries[index] = msgspec.structs.replace(entries[index], actor="mallory")
    assert verify_chain(entries) == index


def test_a_removed_entry_is_reported_where_it_was() -> None:
    entries = _chain(5)
    del entries[2]
    assert verify_chain(entries) == 2


def test_truncation_is_caught_by_the_head() -> None:
    entries = _chain(5)
    head = AuditHead(seq=5, hash=entries[-1].hash)
    assert verify_chain(entries[:4], head) == 4


def test_survives_a_json_round_trip() -> None:
    entries = _chain(3)
    decoded = msgspec.json.decode(msgspec.json.encode(entries), type=list[AuditEntry])
    assert verify_chain(decoded) is None
