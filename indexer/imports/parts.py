"""A part of a source: files whose rows line up (vectors, maybe caption vectors, maybe a
table of uris, captions and metadata), read together a chunk of rows at a time."""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import date, datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from clipsearch.indexer.imports.base import ImportSourceError
from clipsearch.indexer.imports.vectors import VectorChunk, VectorFile, exact_batches


@dataclass(frozen=True)
class TableFile:
    """The Parquet file of a part's uris, captions and metadata."""

    path: Path
    label: str
    uri_column: str | None  # None: uris are synthesized from the vectors' file and row
    caption_column: str | None
    metadata_columns: tuple[str, ...]  # carried into `metadata` as JSON
    sized: bool  # integer `width` and `height` columns give the image's size

    @property
    def rows(self) -> int:
        return int(pq.ParquetFile(self.path).metadata.num_rows)


@dataclass(frozen=True)
class TableChunk:
    uris: list[str] | None
    captions: list[str | None]
    metadata: list[str | None]  # JSON text
    width: np.ndarray  # int32; 0 where the source does not say
    height: np.ndarray


@dataclass(frozen=True)
class PartChunk:
    start: int
    vectors: VectorChunk
    text: VectorChunk | None
    table: TableChunk | None


@dataclass(frozen=True)
class Part:
    vectors: VectorFile
    text_vectors: VectorFile | None
    table: TableFile | None
    stamp: str  # changes whenever one of the part's files changes

    @property
    def label(self) -> str:
        return self.vectors.label

    def check_rows(self) -> int:
        """The row count every file of the part agrees on."""
        rows = self.vectors.rows
        others = [f for f in (self.text_vectors, self.table) if f is not None]
        for other in others:
            if other.rows != rows:
                raise ImportSourceError(
                    f"{self.label} has {rows:,} rows but {other.label} has {other.rows:,}: "
                    "their rows are matched by position, so they must have as many",
                    hint="the files of one part must come from the same run; re-export the "
                    "part, or move it out of the source",
                )
        return rows

    def uris(self) -> list[str]:
        """Every row's uri, in row order."""
        if self.table is None or self.table.uri_column is None:
            return [synthetic_uri(self.vectors.path, row) for row in range(self.vectors.rows)]
        column = pq.read_table(self.table.path, columns=[self.table.uri_column]).column(0)
        uris = column.to_pylist()
        for row, uri in enumerate(uris):
            if uri is None or str(uri) == "":
                raise ImportSourceError(
                    f"{self.table.label} row {row}: no uri ({self.table.uri_column} is empty)",
                    hint="every row needs a uri: --uri-column names another column",
                )
        return [str(u) for u in uris]

    def chunks(self, size: int, with_table: bool) -> Iterator[PartChunk]:
        """The part's rows in chunks of `size`; with_table adds uris, captions, metadata."""
        texts = self.text_vectors.chunks(size) if self.text_vectors else None
        tables = _table_chunks(self.table, size) if with_table and self.table else None
        for chunk in self.vectors.chunks(size):
            rows = len(chunk.present)
            text = next(texts) if texts is not None else None
            table = None
            if with_table:
                table = next(tables) if tables is not None else _blank(rows)
                if table.uris is None:
                    where = range(chunk.start, chunk.start + rows)
                    uris = [synthetic_uri(self.vectors.path, r) for r in where]
                    table = replace(table, uris=uris)
            yield PartChunk(chunk.start, chunk, text, table)


def synthetic_uri(path: Path, row: int) -> str:
    """A vector without a uri of its own: its file and row, the same in every run."""
    return f"{path.absolute()}#{row}"


def files_stamp(paths: list[Path]) -> str:
    """Sizes and modification times of the part's files: any change changes it."""
    text = "|".join(f"{p.name}:{p.stat().st_size}@{p.stat().st_mtime_ns}" for p in paths)
    return hashlib.blake2b(text.encode(), digest_size=8).hexdigest()


def _table_chunks(table: TableFile, size: int) -> Iterator[TableChunk]:
    columns = [table.uri_column] if table.uri_column else []
    columns += [table.caption_column] if table.caption_column else []
    columns += [c for c in table.metadata_columns if c not in columns]
    if not columns:  # an empty table: rows are positions, uris come from the vectors' file
        for start in range(0, table.rows, size):
            yield _blank(min(size, table.rows - start))
        return
    for batch in exact_batches(table.path, columns, size):
        yield _table_chunk(table, batch)


def _table_chunk(table: TableFile, batch: pa.Table) -> TableChunk:
    rows = batch.num_rows
    uris = None
    if table.uri_column:
        uris = [str(u) for u in batch.column(table.uri_column).to_pylist()]
    captions: list[str | None] = [None] * rows
    if table.caption_column:
        values = batch.column(table.caption_column).to_pylist()
        captions = [None if c is None else str(c) for c in values]
    width = height = _zeros(rows)
    if table.sized:
        width = _sizes(batch.column("width"))
        height = _sizes(batch.column("height"))
    metadata: list[str | None] = [None] * rows
    if table.metadata_columns:
        names = table.metadata_columns
        values = zip(*(batch.column(name).to_pylist() for name in names), strict=True)
        metadata = [_json(dict(zip(names, row, strict=True))) for row in values]
    return TableChunk(uris, captions, metadata, width, height)


def _blank(rows: int) -> TableChunk:
    """No table: no uris of their own, no captions, no metadata, no sizes."""
    return TableChunk(None, [None] * rows, [None] * rows, _zeros(rows), _zeros(rows))


def _zeros(rows: int) -> np.ndarray:
    return np.zeros(rows, dtype=np.int32)


def _sizes(column: pa.ChunkedArray) -> np.ndarray:
    values = np.asarray(column.fill_null(0), dtype=np.int64)
    return np.clip(values, 0, np.iinfo(np.int32).max).astype(np.int32)


def _json(record: dict[str, object]) -> str:
    try:
        return _ENCODER.encode(record)
    except ValueError:  # NaN somewhere: the slow path cleans it
        return _ENCODER.encode(_clean(record))


def _clean(value: object) -> object:
    """NaN is not JSON: pandas writes it for missing numbers, so it becomes null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_clean(v) for v in value]
    return value


def _json_default(value: object) -> str:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, bytes):
        return f"<{len(value)} bytes>"
    return str(value)


# One encoder for every row: json.dumps with options builds a new one per call (3x slower).
_ENCODER = json.JSONEncoder(sort_keys=True, allow_nan=False, default=_json_default)
