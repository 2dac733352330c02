"""Per-row records (uri, caption, metadata, size) with O(1) lookup, memory-mapped.

records.jsonl holds one JSON object per row; records.offsets.npy the byte offset of
each row (and the end), so reading row r is one slice of a memory map.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from types import TracebackType

import numpy as np

DATA_NAME = "records.jsonl"
OFFSETS_NAME = "records.offsets.npy"


@dataclass(frozen=True)
class Record:
    """What a search result shows about a row: the shard columns of the same names."""

    uri: str
    caption: str | None
    metadata: str | None  # JSON text, as the source gave it
    width: int
    height: int

    def to_line(self) -> bytes:
        # Field order and separators are the file format: versions already published hold
        # exactly these bytes.
        return json.dumps(asdict(self), ensure_ascii=False, separators=(",", ":")).encode() + b"\n"

    @staticmethod
    def from_line(line: bytes) -> Record:
        return Record(**json.loads(line))


RECORD_COLUMNS = tuple(f.name for f in fields(Record))


class RecordWriter:
    """Writes records.jsonl row by row, and records.offsets.npy when its block ends cleanly.

    A writer either starts new files or (`continuing`) follows the rows of a published
    version, as `build --add` does.
    """

    def __init__(self, folder: Path, offsets: list[int] | None = None) -> None:
        self._folder = folder
        self._offsets = offsets or [0]
        # Closed on leaving the with-block.
        self._handle = open(folder / DATA_NAME, "ab" if offsets else "wb")  # noqa: SIM115

    @classmethod
    def continuing(cls, parent: Path, folder: Path) -> RecordWriter:
        """A writer into `folder` whose first row follows the last row of `parent`."""
        shutil.copyfile(parent / DATA_NAME, folder / DATA_NAME)
        return cls(folder, [int(o) for o in np.load(parent / OFFSETS_NAME)])

    def write(self, records: Iterable[Record]) -> None:
        for record in records:
            line = record.to_line()
            self._handle.write(line)
            self._offsets.append(self._offsets[-1] + len(line))

    def __enter__(self) -> RecordWriter:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self._handle.close()
        if kind is None:  # a half-written file gets no offsets, so it can never load
            np.save(self._folder / OFFSETS_NAME, np.asarray(self._offsets, dtype=np.int64))


class RecordStore:
    def __init__(self, folder: Path) -> None:
        self._offsets = np.load(folder / OFFSETS_NAME, mmap_mode="r")
        size = int(self._offsets[-1])
        self._data = np.memmap(folder / DATA_NAME, dtype=np.uint8, mode="r") if size else None

    def __len__(self) -> int:
        return len(self._offsets) - 1

    def get(self, row: int) -> Record:
        if not 0 <= row < len(self):
            raise IndexError(f"row {row} is outside 0..{len(self) - 1}")
        assert self._data is not None
        start, end = int(self._offsets[row]), int(self._offsets[row + 1])
        return Record.from_line(self._data[start:end].tobytes())


def iter_records(folder: Path) -> Iterator[Record]:
    """Every row's record in row order, read straight through: for passes over all rows,
    where it is several times faster than `RecordStore.get` row by row."""
    with open(folder / DATA_NAME, "rb") as lines:
        for line in lines:  # to_line escapes line breaks inside values: one row per line
            yield Record.from_line(line)
