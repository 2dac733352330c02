"""Offline half of clipsearch: image collections to Parquet shards to FAISS indexes."""

from indexer.build_job import BuildConfig, BuildResult, run_build
from indexer.embed_job import EmbedConfig, EmbedSummary, run_embed
from indexer.engines import Engine
from indexer.index_version import IndexLoadError, IndexVersion, SearchResult, current_version
from indexer.sources import SourceFormat, SourceSpec

__all__ = [
    "BuildConfig",
    "BuildResult",
    "EmbedConfig",
    "EmbedSummary",
    "Engine",
    "IndexLoadError",
    "IndexVersion",
    "SearchResult",
    "SourceFormat",
    "SourceSpec",
    "current_version",
    "run_build",
    "run_embed",
]
