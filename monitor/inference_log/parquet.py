"""Rolling Parquet files of the inference log, under the data directory.

    inference-log/MODEL/YYYY-MM-DD/part-YYYYMMDDTHHMMSS.ffffffZ-vVERSION-PID.HOST.parquet
    inference-log/_labels/YYYY-MM-DD/part-YYYYMMDDTHHMMSS.ffffffZ-PID.HOST.parquet

The day is the UTC day of the records; the name's time is its first record's; PID.HOST
names the process that wrote it, so workers and replicas sharing a volume never collide
(no model is called `_labels`: names start with a letter or a digit). Records are held in
memory per (model, version, day) and each set is written as one file when it is
`roll_seconds` old, when everything held reaches `roll_bytes` (estimated in memory, so at
most about that much is ever held), and when the gateway stops. A file is written under a
temporary name, fsynced and renamed (`registry.files`): readers never see half a file. A
killed process loses what it held (up to `roll_seconds` of records); its temporary files
are swept at the next start. While files cannot be written (a full disk) the records stay
held, up to twice `roll_bytes`; past that new batches are refused (and counted dropped).
"""

from __future__ import annotations

import asyncio
import io
import logging
import re
import time
from collections import defaultdict
from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import msgspec
import polars as pl

from monitor.inference_log.records import Inference, Label, Privacy, Record
from monitor.inference_log.sinks import Counters, Uncounted
from monitor.inference_log.tables import inference_tables, label_table
from registry.files import owner_mark, replace_file, sweep_temporary

logger = logging.getLogger(__name__)
LABELS = "_labels"
PART = re.compile(
    r"^part-(?P<time>\d{8}T\d{6}\.\d{6}Z)(?:-v(?P<version>\d+))?-(?P<owner>[^/]+)\.parquet$"
)
Key = tuple[str, int | None, str]  # directory (model or _labels), version, UTC day


class _Held(msgspec.Struct):
    frames: list[pl.DataFrame]
    records: int  # calls or labels (a call holds a row per row of its request)
    bytes: int
    first: float  # the first record's time (seconds since the epoch)
    since: float  # when it was first held (monotonic)


def day_of(seconds: float) -> str:
    """The UTC day directory of a time: `YYYY-MM-DD`."""
    return time.strftime("%Y-%m-%d", time.gmtime(seconds))


def day_directories(directory: Path, first: date, last: date) -> list[Path]:
    """The day directories under `directory` from `first` to `last`, inclusive."""
    if not directory.is_dir():
        return []
    days = []
    for entry in directory.iterdir():
        try:
            day = date.fromisoformat(entry.name)
        except ValueError:
            continue
        if first <= day <= last and entry.is_dir():
            days.append(entry)
    return sorted(days)


class ParquetSink:
    """Holds records per (model, version, day) and rolls them into Parquet files."""

    name = "parquet"

    def __init__(
        self, root: Path, *, roll_seconds: float, roll_bytes: int, privacy: Privacy
    ) -> None:
        self.root = root
        self._roll_seconds = roll_seconds
        self._roll_bytes = roll_bytes
        self._privacy = privacy
        self._held: dict[Key, _Held] = {}
        self._counters: Counters = Uncounted()
        self._failing = False

    @property
    def held_bytes(self) -> int:
        """Estimated memory of the records held, not yet in a file."""
        return sum(held.bytes for held in self._held.values())

    async def start(self, counters: Counters) -> None:
        """Sweep what killed writers left half-written."""
        self._counters = counters
        await asyncio.to_thread(self._sweep)

    async def write(self, batch: Sequence[Record]) -> None:
        """Hold the batch's rows (`flush` writes them). Refuses the batch (raises
        `OSError`) only while files cannot be written and twice `roll_bytes` is held."""
        if self.held_bytes >= 2 * self._roll_bytes:
            await self._roll(list(self._held))
            if self.held_bytes >= 2 * self._roll_bytes:
                raise OSError(
                    f"inference log files under {self.root} cannot be written; "
                    f"{self.held_bytes} bytes of records are held"
                )
        tables = self._tables(batch)  # on the loop: see `sinks.encode_events` for why
        now = time.monotonic()
        for key, (frame, records) in tables.items():
            held = self._held.get(key)
            if held is None:
                first = min(record.at for record in records)
                held = self._held[key] = _Held([], 0, 0, first, now)
            held.frames.append(frame)
            held.records += len(records)
            held.bytes += int(frame.estimated_size())

    async def flush(self) -> None:
        """Roll the sets held `roll_seconds`, or every set once `roll_bytes` is held."""
        if self.held_bytes >= self._roll_bytes:
            await self._roll(list(self._held))
            return
        cutoff = time.monotonic() - self._roll_seconds
        await self._roll([key for key, held in self._held.items() if held.since <= cutoff])

    async def close(self) -> None:
        """Roll everything held; what cannot be written is counted dropped."""
        await self._roll(list(self._held))
        lost = sum(held.records for held in self._held.values())
        if lost:
            self._counters.dropped("failed", lost)
            self._held.clear()

    def _tables(self, batch: Sequence[Record]) -> dict[Key, tuple[pl.DataFrame, list[Record]]]:
        """The batch's tables by the file set they join, with the records of each."""
        inferences: dict[tuple[str, int, str], list[Inference]] = defaultdict(list)
        labels: dict[str, list[Label]] = defaultdict(list)
        for record in batch:
            if isinstance(record, Inference):
                manifest = record.manifest
                inferences[(manifest.name, manifest.version, day_of(record.at))].append(record)
            else:
                labels[day_of(record.at)].append(record)
        tables: dict[Key, tuple[pl.DataFrame, list[Record]]] = {}
        for key, records in inferences.items():
            ((_, frame),) = inference_tables(records, self._privacy).items()
            tables[key] = (frame, list(records))
        for day, marks in labels.items():
            tables[(LABELS, None, day)] = (label_table(marks), list(marks))
        return tables

    async def _roll(self, keys: list[Key]) -> None:
        """Write each set as one file; a set that fails stays held for the next roll."""
        for key in keys:
            held = self._held[key]
            try:
                await asyncio.to_thread(self._write_file, key, held)
            except OSError as exc:
                if not self._failing:
                    logger.warning("inference log: cannot write Parquet files: %s", exc)
                self._failing = True
                continue
            del self._held[key]
            self._counters.stored(held.records)
            if self._failing:
                logger.warning("inference log: Parquet files are written again")
                self._failing = False

    def _write_file(self, key: Key, held: _Held) -> None:
        directory, version, day = key
        frames = held.frames
        frame = frames[0] if len(frames) == 1 else pl.concat(frames, how="diagonal_relaxed")
        held.frames = [frame]  # concatenated once, even if this write fails and is retried
        tag = "" if version is None else f"-v{version}"
        first = datetime.fromtimestamp(held.first, UTC)
        while True:  # two sets of one key never share a name, even with equal first times
            stamp = first.strftime("%Y%m%dT%H%M%S.%fZ")
            path = self.root / directory / day / f"part-{stamp}{tag}-{owner_mark()}.parquet"
            if not path.exists():
                break
            first += timedelta(microseconds=1)
        path.parent.mkdir(parents=True, exist_ok=True)
        buffer = io.BytesIO()
        frame.write_parquet(buffer)
        replace_file(path, buffer.getvalue())

    def _sweep(self) -> None:
        if self.root.is_dir():
            for directory in self.root.glob("*/*"):
                sweep_temporary(directory)
