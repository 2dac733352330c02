"""Synthetic collections written through the real shard format, for index tests and benches."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa

from bench.synthetic import ClipLikeSpace
from clipsearch.version import VERSION
from indexer.ids import item_id
from indexer.manifest import EmbeddingFormat, FileKind, Manifest, write_manifest
from indexer.shards import embeddings_schema, vector_column, write_shard_file


def clustered_vectors(n: int, dim: int, clusters: int = 64, seed: int = 0) -> np.ndarray:
    """Unit vectors with structure: a shared mean direction, a decaying spectrum, clusters."""
    return ClipLikeSpace(dim, clusters, seed).images(n, seed)


def format_for(dim: int) -> EmbeddingFormat:
    return EmbeddingFormat("synthetic", "none", dim, {}, "float16", False)


def write_synthetic_shards(
    folder: Path,
    vectors: np.ndarray,
    shard_size: int = 5000,
    first: int = 0,
    fmt: EmbeddingFormat | None = None,
) -> list[str]:
    """Append `vectors` as part files (uris item-{first+i}); returns their uris.
    `fmt` names the model they stand for (default: a model called "synthetic")."""
    folder.mkdir(parents=True, exist_ok=True)
    from indexer.manifest import read_manifest

    fmt = fmt or format_for(vectors.shape[1])
    manifest = read_manifest(folder) or Manifest(embedding=fmt, clipsearch_version=VERSION)
    uris = [f"item-{first + i}" for i in range(len(vectors))]
    for start in range(0, len(vectors), shard_size):
        part = vectors[start : start + shard_size]
        names = uris[start : start + shard_size]
        n = len(part)
        table = pa.table(
            {
                "id": [item_id(u) for u in names],
                "uri": names,
                "embedding": vector_column(part, "float16"),
                "width": [1] * n,
                "height": [1] * n,
                "content_hash": [""] * n,
                "stamp": ["s"] * n,
                "caption": [f"caption of {u}" for u in names],
                "metadata": [f'{{"n": {first + start + i}}}' for i in range(n)],
            },
            schema=embeddings_schema(fmt),
        )
        entry = write_shard_file(folder, FileKind.EMBEDDINGS, manifest.next_seq, table, fmt, 1)
        manifest = manifest.with_file(entry)
    write_manifest(folder, manifest)
    return uris
