"""The offline half of clipsearch: image collections to Parquet shards (`embed/`), shards to
published FAISS index versions (`build/`)."""

from clipsearch.indexer.build.job import BuildConfig, BuildResult, run_build
from clipsearch.indexer.embed.job import EmbedConfig, EmbedSummary, run_embed
from clipsearch.indexer.embed.sources import SourceFormat, SourceSpec
from clipsearch.indexer.engine import Engine

__all__ = [
    "BuildConfig",
    "BuildResult",
    "EmbedConfig",
    "EmbedSummary",
    "Engine",
    "SourceFormat",
    "SourceSpec",
    "run_build",
    "run_embed",
]
