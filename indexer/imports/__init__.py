"""`clipsearch import`: embeddings made elsewhere (clip-retrieval output, .npy files,
Parquet tables) to a collection in the shard format, without running the model."""

from clipsearch.indexer.imports.base import ImportSource, ImportSourceError, SourceKind
from clipsearch.indexer.imports.job import (
    ImportConfig,
    ImportInterrupted,
    ImportSummary,
    NothingToImportError,
    run_import,
)
from clipsearch.indexer.imports.space import model_space

__all__ = [
    "ImportConfig",
    "ImportInterrupted",
    "ImportSource",
    "ImportSourceError",
    "ImportSummary",
    "NothingToImportError",
    "SourceKind",
    "model_space",
    "run_import",
]
