"""Turning encoded batches into durable shard files, one manifest update per shard."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa

from clipsearch.collection.manifest import EmbeddingFormat, FileKind, Manifest, write_manifest
from clipsearch.collection.shards import (
    DELETIONS_SCHEMA,
    ERRORS_SCHEMA,
    LiveItem,
    embeddings_schema,
    vector_column,
    write_shard_file,
)
from clipsearch.encoder import DecodeFailure
from clipsearch.indexer.embed.encode import EncodedBatch
from clipsearch.indexer.embed.plan import PlannedItem
from clipsearch.indexer.memory import release_free_memory

_EMPTY = EncodedBatch([], np.empty((0, 0), np.float32), None, [])


@dataclass
class _Buffer:
    batches: list[EncodedBatch] = field(default_factory=list)
    count: int = 0


class ShardCommitter:
    """Collects batches in pending order and commits a shard once it holds `shard_size`
    items (a batch that crosses the boundary is split), so part files hold at most
    `shard_size` rows: fewer where inputs were skipped.

    A shard's files are written under their final names first, then the manifest is
    replaced: a crash in between leaves orphans that the next run deletes and redoes.
    """

    def __init__(
        self,
        folder: Path,
        manifest: Manifest,
        pending: Sequence[PlannedItem],
        shard_size: int,
        run: int,
    ) -> None:
        self.folder = folder
        self.manifest = manifest
        self.pending = pending
        self.shard_size = shard_size
        self.run = run
        self.skipped: Counter[DecodeFailure] = Counter()
        self.embedded = 0
        self.shards_written = 0
        self._buffer = _Buffer()
        self._done = 0

    @property
    def fmt(self) -> EmbeddingFormat:
        return self.manifest.embedding

    def add(self, batch: EncodedBatch) -> None:
        while batch.items:
            room = self.shard_size - self._buffer.count
            head, batch = batch.split(room) if len(batch.items) > room else (batch, _EMPTY)
            self._buffer.batches.append(head)
            self._buffer.count += len(head.items)
            if self._buffer.count >= min(self.shard_size, len(self.pending) - self._done):
                self._flush()

    def finish(self) -> None:
        if self._buffer.count:
            self._flush()

    def commit_deletions(self, deleted: list[LiveItem]) -> None:
        if not deleted:
            return
        table = pa.table(
            {"id": [d.id for d in deleted], "uri": [d.uri for d in deleted]},
            schema=DELETIONS_SCHEMA,
        )
        self._commit([(FileKind.DELETIONS, table)])

    def _flush(self) -> None:
        batches, self._buffer = self._buffer.batches, _Buffer()
        parts, errors = self._tables(batches)
        self._commit([(FileKind.EMBEDDINGS, parts), (FileKind.ERRORS, errors)])
        self._done += sum(len(b.items) for b in batches)
        self.shards_written += 1
        release_free_memory()

    def _commit(self, tables: list[tuple[FileKind, pa.Table]]) -> None:
        seq = self.manifest.next_seq
        manifest = self.manifest
        for kind, table in tables:
            if kind is FileKind.ERRORS and table.num_rows == 0:
                continue
            entry = write_shard_file(self.folder, kind, seq, table, self.fmt, self.run)
            manifest = manifest.with_file(entry)
        write_manifest(self.folder, manifest)
        self.manifest = manifest

    def _tables(self, batches: list[EncodedBatch]) -> tuple[pa.Table, pa.Table]:
        rows: dict[str, list[object]] = {name: [] for name in embeddings_schema(self.fmt).names}
        errors: dict[str, list[object]] = {name: [] for name in ERRORS_SCHEMA.names}
        vectors, text_vectors, text_valid = [], [], []
        for batch in batches:
            decoded = [i for i in batch.items if i.failure is None]
            vectors.append(batch.vectors)
            text_vectors.append(_text_rows(batch, self.fmt.dim))
            text_valid += batch.captioned
            for item in batch.items:
                planned = self.pending[item.position]
                if item.failure is not None:
                    self.skipped[item.failure] += 1
                    for name, value in zip(
                        ERRORS_SCHEMA.names,
                        (
                            planned.id,
                            planned.item.uri,
                            planned.item.stamp,
                            item.failure.value,
                            item.detail,
                        ),
                        strict=True,
                    ):
                        errors[name].append(value)
            for item in decoded:
                planned = self.pending[item.position]
                rows["id"].append(planned.id)
                rows["uri"].append(planned.item.uri)
                rows["width"].append(item.width)
                rows["height"].append(item.height)
                rows["content_hash"].append(item.content_hash)
                rows["stamp"].append(planned.item.stamp)
                rows["caption"].append(item.caption)
                rows["metadata"].append(item.metadata)
            self.embedded += len(decoded)
        schema = embeddings_schema(self.fmt)
        dtype = self.fmt.embedding_dtype
        rows["embedding"] = vector_column(np.concatenate(vectors), dtype)
        if self.fmt.text_embeddings:
            column = vector_column(np.concatenate(text_vectors), dtype)
            mask = pa.array([not v for v in text_valid])
            rows["text_embedding"] = pa.FixedSizeListArray.from_arrays(
                column.values, self.fmt.dim, mask=mask
            )
        return pa.table(rows, schema=schema), pa.table(errors, schema=ERRORS_SCHEMA)


def _text_rows(batch: EncodedBatch, dim: int) -> np.ndarray:
    """Text vectors spread to one row per decoded item (zeros where there is no caption)."""
    out = np.zeros((len(batch.captioned), dim), dtype=np.float32)
    if batch.text_vectors is not None:
        out[np.array(batch.captioned, dtype=bool)] = batch.text_vectors
    return out
