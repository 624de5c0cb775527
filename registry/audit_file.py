"""The embedded audit log: `audit.jsonl`, one entry per line, and `audit.head` beside it.

An entry exists once its whole line, newline included, is on disk: it is written in one
append and fsynced before the change is acknowledged. A line without its newline is the
remains of an append that never finished, so it was never acknowledged; it is cut off
before the next append (else that entry would be glued onto it and lost) and readers skip
it (it may also be an append in progress). The head is replaced atomically after each
append, and only checks the log: the next entry is always chained onto the log's own last
entry (`registry.audit.chain_head`). So a crash at any point leaves either the old log or
the old log plus one whole entry, and the chain verifies either way.

Appends and recovery must hold the state lock; reading needs no lock.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import msgspec

from registry.audit import AuditEntry, AuditHead, AuditLog, chain_head, decode_head, read_log
from registry.files import replace_file

logger = logging.getLogger(__name__)
_BLOCK = 1 << 16  # bytes read at a time when reading the log from its end


class AuditFile:
    """The audit log and head files in one directory."""

    def __init__(self, directory: Path) -> None:
        self.log_path = Path(directory) / "audit.jsonl"
        self.head_path = Path(directory) / "audit.head"

    def recover(self) -> AuditHead:
        """Cut a torn last line off the log; returns the head the next entry chains onto.
        Reads only the end of the log, however long it is."""
        try:
            handle = self.log_path.open("r+b")
        except FileNotFoundError:
            return chain_head([], self._recorded_head())
        with handle:
            size = os.fstat(handle.fileno()).st_size
            complete = _complete_length(handle, size)
            if complete < size:
                logger.warning(
                    "cutting %d bytes off the end of %s: the last append never finished, so "
                    "its entry was never acknowledged",
                    size - complete,
                    self.log_path,
                )
                handle.truncate(complete)
                os.fsync(handle.fileno())
            return chain_head(_lines_backwards(handle, complete), self._recorded_head())

    def append(self, entry: AuditEntry) -> None:
        """Append `entry` (chained onto the head `recover` returned) durably, then record the
        head. Once the entry is on disk the change is made: a head that cannot be recorded
        then (a full disk) is logged, not raised, as the next append derives it from the log.

        A failed write (a full disk) is cut off again, so it leaves the log as it was.
        """
        line = msgspec.json.encode(entry) + b"\n"  # JSON escapes newlines: one line per entry
        descriptor = os.open(self.log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            start = os.fstat(descriptor).st_size
            try:
                written = 0
                while written < len(line):
                    written += os.write(descriptor, line[written:])
                os.fsync(descriptor)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.ftruncate(descriptor, start)
                raise
        finally:
            os.close(descriptor)
        try:
            replace_file(
                self.head_path, msgspec.json.encode(AuditHead(seq=entry.seq, hash=entry.hash))
            )
        except OSError as exc:
            logger.warning("%s not updated to seq %d: %s", self.head_path, entry.seq, exc)

    def read(self) -> AuditLog:
        """Every complete entry and the recorded head, damage reported, not raised."""
        # The head first: an append landing between the two reads then only lengthens the
        # log past the head, which is consistent, never the reverse.
        try:
            head: bytes | None = self.head_path.read_bytes()
        except FileNotFoundError:
            head = None
        try:
            data = self.log_path.read_bytes()
        except FileNotFoundError:
            data = b""
        lines = data[: data.rfind(b"\n") + 1].splitlines()  # without an unfinished last line
        records = [
            (f"line {number} of {self.log_path}", line)
            for number, line in enumerate(lines, start=1)
            if line.strip()
        ]
        return read_log(records, head, str(self.head_path))

    def _recorded_head(self) -> AuditHead | None:
        try:
            return decode_head(self.head_path.read_bytes())
        except FileNotFoundError:
            return None
        except ValueError as exc:
            logger.warning("%s is %s; the next entry rewrites it", self.head_path, exc)
            return None


def _complete_length(handle: BinaryIO, size: int) -> int:
    """The length of the file up to and including its last newline."""
    position = size
    while position > 0:
        start = max(0, position - _BLOCK)
        handle.seek(start)
        index = handle.read(position - start).rfind(b"\n")
        if index >= 0:
            return start + index + 1
        position = start
    return 0


def _lines_backwards(handle: BinaryIO, end: int) -> Iterator[bytes]:
    """The non-blank lines before offset `end` (just past a newline), newest first, read a
    block at a time so that only as much of the log is read as is consumed."""
    pending = b""  # the start of a line that may continue in the block before
    position = end
    while position > 0:
        start = max(0, position - _BLOCK)
        handle.seek(start)
        pieces = (handle.read(position - start) + pending).split(b"\n")
        position = start
        pending = pieces[0]
        for line in reversed(pieces[1:]):
            if line.strip():
                yield line
    if pending.strip():
        yield pending
