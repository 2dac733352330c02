"""Per-row records (uri, caption, metadata, size) with O(1) lookup, memory-mapped.

records.jsonl holds one JSON object per row; records.offsets.npy the byte offset of
each row (and the end), so reading row r is one slice of a memory map.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

import numpy as np

DATA_NAME = "records.jsonl"
OFFSETS_NAME = "records.offsets.npy"


def write_records(folder: Path, records: Iterable[dict[str, object]]) -> int:
    offsets = [0]
    with open(folder / DATA_NAME, "wb") as handle:
        for record in records:
            line = json.dumps(record, ensure_ascii=False, separators=(",", ":")).encode() + b"\n"
            handle.write(line)
            offsets.append(offsets[-1] + len(line))
    np.save(folder / OFFSETS_NAME, np.asarray(offsets, dtype=np.int64))
    return len(offsets) - 1


class RecordStore:
    def __init__(self, folder: Path) -> None:
        self._offsets = np.load(folder / OFFSETS_NAME, mmap_mode="r")
        size = int(self._offsets[-1])
        self._data = np.memmap(folder / DATA_NAME, dtype=np.uint8, mode="r") if size else None

    def __len__(self) -> int:
        return len(self._offsets) - 1

    def get(self, row: int) -> dict[str, object]:
        if not 0 <= row < len(self):
            raise IndexError(f"row {row} is outside 0..{len(self) - 1}")
        assert self._data is not None
        start, end = int(self._offsets[row]), int(self._offsets[row + 1])
        record: dict[str, object] = json.loads(self._data[start:end].tobytes())
        return record
