"""Imported rows to durable part files, one manifest update per shard (as embed does:
files under their final names first, then the manifest; a crash between leaves orphans
that the next run removes and redoes)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa

from clipsearch.collection.manifest import EmbeddingFormat, FileKind, Manifest, write_manifest
from clipsearch.collection.shards import (
    DELETIONS_SCHEMA,
    LiveItem,
    embeddings_schema,
    vector_column,
    write_shard_file,
)


@dataclass(frozen=True)
class ShardRows:
    """Rows ready for a part file: unit float32 vectors and their columns."""

    ids: np.ndarray
    uris: list[str]
    vectors: np.ndarray
    text_vectors: np.ndarray | None  # zero rows where a row has no caption vector
    text_present: np.ndarray | None
    width: np.ndarray
    height: np.ndarray
    stamps: list[str]
    captions: list[str | None]
    metadata: list[str | None]

    def __len__(self) -> int:
        return len(self.ids)

    def split(self, count: int) -> tuple[ShardRows, ShardRows]:
        return self._take(slice(0, count)), self._take(slice(count, None))

    def _take(self, where: slice) -> ShardRows:
        return ShardRows(
            self.ids[where],
            self.uris[where],
            self.vectors[where],
            None if self.text_vectors is None else self.text_vectors[where],
            None if self.text_present is None else self.text_present[where],
            self.width[where],
            self.height[where],
            self.stamps[where],
            self.captions[where],
            self.metadata[where],
        )

    @staticmethod
    def join(parts: list[ShardRows]) -> ShardRows:
        """Rows of several batches; their text columns are all present or all absent."""

        def arrays(name: str) -> np.ndarray:
            return np.concatenate([getattr(p, name) for p in parts])

        def lists(name: str) -> list[object]:
            return [value for p in parts for value in getattr(p, name)]

        texts = parts[0].text_vectors is not None
        return ShardRows(
            ids=arrays("ids"),
            uris=lists("uris"),  # type: ignore[arg-type]
            vectors=arrays("vectors"),
            text_vectors=arrays("text_vectors") if texts else None,
            text_present=arrays("text_present") if texts else None,
            width=arrays("width"),
            height=arrays("height"),
            stamps=lists("stamps"),  # type: ignore[arg-type]
            captions=lists("captions"),  # type: ignore[arg-type]
            metadata=lists("metadata"),  # type: ignore[arg-type]
        )


class ShardWriter:
    """Buffers rows and commits a part file every `shard_size` rows."""

    def __init__(self, folder: Path, manifest: Manifest, run: int, shard_size: int) -> None:
        self.folder = folder
        self.manifest = manifest
        self.run = run
        self.shard_size = shard_size
        self.imported = 0
        self.shards_written = 0
        self._buffer: list[ShardRows] = []
        self._held = 0

    @property
    def fmt(self) -> EmbeddingFormat:
        return self.manifest.embedding

    def add(self, rows: ShardRows) -> None:
        while len(rows):
            room = self.shard_size - self._held
            head, rows = rows.split(room)
            self._buffer.append(head)
            self._held += len(head)
            if self._held >= self.shard_size:
                self._flush()

    def finish(self) -> None:
        if self._held:
            self._flush()

    def commit_deletions(self, deleted: list[LiveItem]) -> None:
        if deleted:
            table = pa.table(
                {"id": [d.id for d in deleted], "uri": [d.uri for d in deleted]},
                schema=DELETIONS_SCHEMA,
            )
            self._commit(FileKind.DELETIONS, table)

    def _flush(self) -> None:
        rows = ShardRows.join(self._buffer)
        self._buffer, self._held = [], 0
        self._commit(FileKind.EMBEDDINGS, self._table(rows))
        self.imported += len(rows)
        self.shards_written += 1

    def _commit(self, kind: FileKind, table: pa.Table) -> None:
        seq = self.manifest.next_seq
        entry = write_shard_file(self.folder, kind, seq, table, self.fmt, self.run)
        manifest = self.manifest.with_file(entry)
        write_manifest(self.folder, manifest)
        self.manifest = manifest

    def _table(self, rows: ShardRows) -> pa.Table:
        dtype = self.fmt.embedding_dtype
        columns: dict[str, object] = {
            "id": rows.ids,
            "uri": rows.uris,
            "embedding": vector_column(rows.vectors, dtype),
            "width": rows.width,
            "height": rows.height,
            # Null, not "": the image bytes were never read, and equal empty hashes would
            # make every imported item look like one image to anything that dedupes.
            "content_hash": pa.nulls(len(rows), pa.string()),
            "stamp": rows.stamps,
            "caption": rows.captions,
            "metadata": rows.metadata,
        }
        if self.fmt.text_embeddings:
            texts = rows.text_vectors
            present = rows.text_present
            if texts is None or present is None:  # a part without caption vectors
                texts = np.zeros_like(rows.vectors)
                present = np.zeros(len(rows), dtype=bool)
            column = vector_column(texts, dtype)
            columns["text_embedding"] = pa.FixedSizeListArray.from_arrays(
                column.values, self.fmt.dim, mask=pa.array(~present)
            )
        return pa.table(columns, schema=embeddings_schema(self.fmt))
