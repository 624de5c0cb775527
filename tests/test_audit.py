"""The audit log's hash chain: any modified, removed or unreadable entry is found, and the
next entry is numbered so that none is ever numbered twice."""

from __future__ import annotations

import msgspec
import pytest

from registry.audit import (
    RESTORED,
    AuditEntry,
    AuditHead,
    AuditLog,
    Verdict,
    chain_head,
    next_entry,
    read_log,
    verify_chain,
    verify_log,
)


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


def _encoded(entries: list[AuditEntry]) -> list[bytes]:
    return [msgspec.json.encode(entry) for entry in entries]


def test_the_next_entry_chains_onto_the_last_readable_one() -> None:
    entries = _chain(3)
    newest_first = _encoded(entries)[::-1]
    assert chain_head(newest_first, None) == AuditHead(seq=3, hash=entries[-1].hash)
    assert chain_head([], None) == AuditHead()
    # A head behind the log is a crash between append and head: the log wins.
    behind = AuditHead(seq=2, hash=entries[1].hash)
    assert chain_head(newest_first, behind) == AuditHead(seq=3, hash=entries[-1].hash)


def test_no_sequence_number_is_given_twice() -> None:
    entries = _chain(3)
    damaged = [b"\x00garbage", *_encoded(entries)[::-1]]
    # the unreadable last record took seq 4: the next entry is 5, chained onto entry 3
    assert chain_head(damaged, None) == AuditHead(seq=4, hash=entries[-1].hash)
    # a head ahead of the log (entries cut from its end) keeps its numbers taken
    ahead = AuditHead(seq=7, hash="f" * 64)
    assert chain_head(_encoded(entries)[::-1], ahead) == AuditHead(seq=7, hash=entries[-1].hash)


def test_a_read_log_reports_what_it_cannot_read() -> None:
    entries = _chain(4)
    records = [(f"line {n}", data) for n, data in enumerate(_encoded(entries), start=1)]
    records[2] = ("line 3", b'{"seq": 3, "ti')
    head = msgspec.json.encode(AuditHead(seq=4, hash=entries[-1].hash))
    log = read_log(records, head, "the head")
    assert [entry.seq for entry in log.entries] == [1, 2, 4]
    verdict = verify_log(log)
    assert verdict.first_invalid == 2
    assert verdict.problem is not None
    assert verdict.problem == "line 3 is not a readable audit entry (Input data was truncated)"

    intact = [(f"line {n}", data) for n, data in enumerate(_encoded(entries), start=1)]
    assert verify_log(read_log(intact, head, "the head")) == Verdict()
    unreadable_head = verify_log(read_log(intact, b"[", "the head"))
    assert unreadable_head.first_invalid is None
    assert str(unreadable_head.problem).startswith("the head is not an audit head")
    modified = verify_log(read_log([*intact[:3], ("line 4", b"{}")], head, "the head"))
    assert modified.first_invalid == 3


def test_verification_says_what_is_wrong() -> None:
    entries = _chain(3)
    entries[1] = msgspec.structs.replace(entries[1], actor="mallory")
    problem = verify_log(AuditLog(entries=entries)).problem
    assert problem == "entry 1 (seq 2) does not match its hash: it was modified"
    cut = verify_log(AuditLog(entries=_chain(3)[:2], head=AuditHead(seq=3))).problem
    assert cut is not None
    assert "ends at seq 2 but its head records seq 3" in cut


def test_a_log_that_begins_with_a_restoration_is_checked_from_there() -> None:
    lost = _chain(4)  # what the store lost; a gateway kept the head of it
    restored = next_entry(
        AuditHead(seq=4, hash=lost[-1].hash), actor="controller", action=RESTORED, model=""
    )
    after = next_entry(AuditHead(seq=5, hash=restored.hash), actor="alice", action="x", model="m")
    log = AuditLog(entries=[restored, after], head=AuditHead(seq=6, hash=after.hash))
    assert verify_log(log) == Verdict(restored_after=4)
    assert verify_log(AuditLog(entries=[*lost, restored, after])) == Verdict()  # the whole
    # Any other entry must still follow the genesis, and a restoration anywhere but first
    # must follow the entry before it.
    assert verify_chain(lost[2:]) == 0
    assert verify_chain([lost[0], restored]) == 1
    forged = msgspec.structs.replace(restored, prev_hash="f" * 64)
    assert verify_chain([forged, after]) == 0  # its hash covers what it continues
