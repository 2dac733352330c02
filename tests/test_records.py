"""Per-row records: one writer for new and continued files, byte-compatible with old versions."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from clipsearch.index.records import (
    DATA_NAME,
    OFFSETS_NAME,
    Record,
    RecordStore,
    RecordWriter,
)

RECORDS = [
    Record("/photos/ünïcode.jpg", "a caption", '{"n": 1}', 640, 480),
    Record("item-2", None, None, 1, 1),
    Record("item-3", 'quotes " and \\ and\nnewlines', "{}", 3, 4),
]
# What versions published before Record existed hold for RECORDS: they must keep loading,
# and new versions must keep writing the same bytes.
PUBLISHED = (
    '{"uri":"/photos/ünïcode.jpg","caption":"a caption","metadata":"{\\"n\\": 1}",'
    '"width":640,"height":480}\n'
    '{"uri":"item-2","caption":null,"metadata":null,"width":1,"height":1}\n'
    '{"uri":"item-3","caption":"quotes \\" and \\\\ and\\nnewlines","metadata":"{}",'
    '"width":3,"height":4}\n'
).encode()


def test_records_are_written_byte_for_byte_as_before(tmp_path: Path) -> None:
    with RecordWriter(tmp_path) as writer:
        writer.write(RECORDS)
    assert (tmp_path / DATA_NAME).read_bytes() == PUBLISHED
    lines = PUBLISHED.splitlines(keepends=True)
    expected = np.cumsum([0, *(len(line) for line in lines)])
    np.testing.assert_array_equal(np.load(tmp_path / OFFSETS_NAME), expected)


def test_a_published_version_s_records_load_as_records(tmp_path: Path) -> None:
    (tmp_path / DATA_NAME).write_bytes(PUBLISHED)
    offsets = np.cumsum([0, *(len(line) for line in PUBLISHED.splitlines(keepends=True))])
    np.save(tmp_path / OFFSETS_NAME, offsets.astype(np.int64))
    store = RecordStore(tmp_path)
    assert len(store) == 3
    assert [store.get(row) for row in range(3)] == RECORDS
    with pytest.raises(IndexError):
        store.get(3)


def test_continuing_a_version_equals_writing_everything_at_once(tmp_path: Path) -> None:
    parent, child, whole = (tmp_path / name for name in ("parent", "child", "whole"))
    for folder in (parent, child, whole):
        folder.mkdir()
    with RecordWriter(parent) as writer:
        writer.write(RECORDS[:2])
    with RecordWriter.continuing(parent, child) as writer:
        writer.write(RECORDS[2:])
    with RecordWriter(whole) as writer:
        writer.write(RECORDS)
    for name in (DATA_NAME, OFFSETS_NAME):
        assert (child / name).read_bytes() == (whole / name).read_bytes()
    assert [RecordStore(child).get(row) for row in range(3)] == RECORDS
    assert len(RecordStore(parent)) == 2  # the parent is only read


def test_a_failed_write_leaves_no_offsets(tmp_path: Path) -> None:
    def failing() -> list[Record]:
        raise OSError("disk full")

    with pytest.raises(OSError), RecordWriter(tmp_path) as writer:
        writer.write(failing())
    assert not (tmp_path / OFFSETS_NAME).exists()


def test_an_empty_version_has_no_records(tmp_path: Path) -> None:
    with RecordWriter(tmp_path) as writer:
        writer.write([])
    assert len(RecordStore(tmp_path)) == 0
