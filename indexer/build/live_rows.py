"""The collection's current rows, for building: latest event per id, computed in numpy."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from clipsearch.collection.manifest import FileKind, Manifest, ShardFile
from clipsearch.collection.shards import read_vectors
from clipsearch.index.fields import parse_date
from clipsearch.index.manifest import REMOVED
from clipsearch.index.records import RECORD_COLUMNS, Record

NOT_A_TIME = np.datetime64("NaT", "us")


@dataclass(frozen=True)
class LiveFile:
    entry: ShardFile
    mask: np.ndarray  # per row of the file: is it the current row of its id
    ids: np.ndarray  # per row of the file: its item id


@dataclass(frozen=True)
class LiveSet:
    files: list[LiveFile]

    @property
    def count(self) -> int:
        return int(sum(f.mask.sum() for f in self.files))


@dataclass(frozen=True)
class LiveChunk:
    """Current rows of one part file: ids, vectors and what search results show."""

    ids: np.ndarray
    vectors: np.ndarray
    records: list[Record]


def live_set(folder: Path, manifest: Manifest) -> LiveSet:
    entries = sorted(manifest.files, key=lambda f: f.seq)
    ids = [pq.read_table(folder / e.file, columns=["id"]).column("id").to_numpy() for e in entries]
    lengths = [len(part) for part in ids]
    all_ids = np.concatenate(ids) if ids else np.empty(0, np.int64)
    # Files are in seq order and an id occurs once per file, so the last occurrence of an
    # id in the concatenation is its latest event.
    order = np.argsort(all_ids, kind="stable")
    sorted_ids = all_ids[order]
    last = np.ones(len(order), dtype=bool)
    last[:-1] = sorted_ids[:-1] != sorted_ids[1:]
    is_latest = np.zeros(len(all_ids), dtype=bool)
    is_latest[order[last]] = True
    files, start = [], 0
    for entry, length, part in zip(entries, lengths, ids, strict=True):
        if entry.kind is FileKind.EMBEDDINGS:
            files.append(LiveFile(entry, is_latest[start : start + length], part))
        start += length
    return LiveSet(files)


def iter_live(folder: Path, live: LiveSet, dim: int) -> Iterator[LiveChunk]:
    """Current rows file by file: memory holds one shard at a time."""
    for part in live.files:
        if not part.mask.any():
            continue
        table = pq.read_table(
            folder / part.entry.file, columns=["id", "embedding", *RECORD_COLUMNS]
        )
        table = table.filter(part.mask)
        yield LiveChunk(
            ids=table.column("id").to_numpy(),
            vectors=read_vectors(table.column("embedding"), dim),
            records=[Record(**row) for row in table.select(list(RECORD_COLUMNS)).to_pylist()],
        )


@dataclass(frozen=True)
class CaptionChunk:
    """The caption embeddings of one part file's current rows that have a caption."""

    ids: np.ndarray  # their item ids
    vectors: np.ndarray  # (len(ids), dim) float32


def iter_live_captions(folder: Path, files: list[LiveFile], dim: int) -> Iterator[CaptionChunk]:
    """Current rows' caption embeddings, file by file (`text_embedding` is null for
    items without a caption: those are left out)."""
    for part in files:
        if not part.mask.any():
            continue
        table = pq.read_table(folder / part.entry.file, columns=["id", "text_embedding"])
        table = table.filter(part.mask)
        column = table.column("text_embedding")
        table = table.filter(column.is_valid())
        if table.num_rows:
            yield CaptionChunk(
                table.column("id").to_numpy(), read_vectors(table.column("text_embedding"), dim)
            )


def embedded_at(manifest: Manifest, live: LiveSet, ids: np.ndarray) -> np.ndarray:
    """Per row of a version, given its item ids: when the run that embedded the id's current
    row started (the run record of its shard file), as datetime64[us] in UTC. NaT for
    removed rows and for shards whose run has no record or an unreadable time."""
    started = {run.run: _moment(run.started) for run in manifest.runs}
    live_ids = np.concatenate([f.ids[f.mask] for f in live.files] or [np.empty(0, np.int64)])
    times = np.concatenate(
        [np.full(int(f.mask.sum()), started.get(f.entry.run, NOT_A_TIME)) for f in live.files]
        or [np.empty(0, "datetime64[us]")]
    )
    if not len(live_ids):
        return np.full(len(ids), NOT_A_TIME)
    order = np.argsort(live_ids, kind="stable")
    sorted_ids, sorted_times = live_ids[order], times[order]
    at = np.minimum(np.searchsorted(sorted_ids, ids), len(sorted_ids) - 1)
    found = (sorted_ids[at] == ids) & (ids != REMOVED)
    return np.where(found, sorted_times[at], NOT_A_TIME)


def _moment(text: str) -> np.datetime64:
    moment = parse_date(text)
    return NOT_A_TIME if moment is None else np.datetime64(moment.replace(tzinfo=None), "us")
