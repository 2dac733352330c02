"""`clipsearch embed`: a source of images to a collection of Parquet shards, resumably."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from tqdm import tqdm

from clipsearch.atomic import remove_temporary_files
from clipsearch.collection.manifest import (
    EmbeddingFormat,
    Manifest,
    ManifestError,
    RunRecord,
    VectorDtype,
    read_manifest,
    write_manifest,
)
from clipsearch.collection.shards import collection_state, orphan_files
from clipsearch.encoder import DEFAULT_MAX_PIXELS, ClipEncoder, DecodeFailure, load_encoder
from clipsearch.indexer.embed.commit import ShardCommitter
from clipsearch.indexer.embed.decode import Decoder
from clipsearch.indexer.embed.encode import EncodedBatch
from clipsearch.indexer.embed.engines.local import DEFAULT_WORKER_TIMEOUT_S, run_local
from clipsearch.indexer.embed.plan import PlannedItem, plan_embedding
from clipsearch.indexer.embed.sources import SourceSpec, list_source
from clipsearch.indexer.engine import Engine
from clipsearch.indexer.lock import exclusive
from clipsearch.models import ModelSpec
from clipsearch.version import VERSION

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EmbedConfig:
    source: SourceSpec
    out: Path
    model: ModelSpec = field(default_factory=ModelSpec)
    batch_size: int = 32
    workers: int = min(4, os.cpu_count() or 1)
    shard_size: int = 10_000
    embedding_dtype: VectorDtype = VectorDtype.FLOAT16
    embed_captions: bool = False
    max_pixels: int = DEFAULT_MAX_PIXELS
    engine: Engine = Engine.LOCAL
    ray_address: str | None = None
    quiet: bool = False
    worker_timeout_s: float = DEFAULT_WORKER_TIMEOUT_S


@dataclass(frozen=True)
class EmbedSummary:
    embedded: int
    unchanged: int
    skipped: dict[DecodeFailure, int]
    deleted: int
    duplicates: int
    seconds: float
    shards: int

    @property
    def images_per_second(self) -> float:
        processed = self.embedded + sum(self.skipped.values())
        return processed / self.seconds if self.seconds > 0 else 0.0

    def describe(self) -> str:
        skipped = sum(self.skipped.values())
        reasons = ", ".join(f"{n} {r.value}" for r, n in sorted(self.skipped.items()))
        lines = [
            f"embedded {self.embedded}, unchanged {self.unchanged}, "
            f"skipped {skipped}{f' ({reasons})' if reasons else ''}, deleted {self.deleted}",
            f"{self.images_per_second:.1f} images/s over {self.seconds:.1f} s, "
            f"{self.shards} shard(s) written",
        ]
        if self.duplicates:
            lines.append(f"{self.duplicates} duplicate uri(s) in the source were embedded once")
        return "\n".join(lines)


def run_embed(config: EmbedConfig) -> EmbedSummary:
    started = time.monotonic()
    config.out.mkdir(parents=True, exist_ok=True)
    with exclusive(config.out, "embed"):
        encoder = load_encoder(config.model)
        manifest = _open_collection(config, _format_of(encoder, config))
        state = collection_state(config.out, manifest)
        plan = plan_embedding(list_source(config.source), state)
        log.info(
            "%s: %d new, %d changed, %d unchanged, %d deleted",
            config.source.url,
            plan.new,
            plan.changed,
            plan.unchanged,
            len(plan.deleted),
        )
        run = manifest.next_run()
        record = RunRecord(run, config.source.url, _now())
        manifest = manifest.with_run(record)
        write_manifest(config.out, manifest)
        committer = ShardCommitter(config.out, manifest, plan.pending, config.shard_size, run)
        committer.commit_deletions(plan.deleted)
        with tqdm(
            total=len(plan.pending), unit="img", disable=config.quiet, smoothing=0.1
        ) as progress:
            for batch in _batches(plan.pending, encoder, config):
                committer.add(batch)
                progress.update(len(batch.items))
                if committer.skipped:
                    progress.set_postfix(skipped=sum(committer.skipped.values()))
        committer.finish()
        summary = EmbedSummary(
            embedded=committer.embedded,
            unchanged=plan.unchanged,
            skipped=dict(committer.skipped),
            deleted=len(plan.deleted),
            duplicates=plan.duplicates,
            seconds=time.monotonic() - started,
            shards=committer.shards_written,
        )
        finished = RunRecord(
            run,
            config.source.url,
            record.started,
            _now(),
            summary.embedded,
            summary.unchanged,
            sum(summary.skipped.values()),
            summary.deleted,
        )
        write_manifest(config.out, committer.manifest.with_run(finished))
        return summary


def _batches(
    pending: Sequence[PlannedItem], encoder: ClipEncoder, config: EmbedConfig
) -> Iterator[EncodedBatch]:
    tokenizer = encoder.tokenizer if config.embed_captions else None
    decoder = Decoder(encoder.transform, tokenizer, config.max_pixels)
    if config.engine is Engine.RAY:
        from clipsearch.indexer.embed.engines.ray import (
            run_ray,  # Ray is imported only when asked for
        )

        return run_ray(
            pending, decoder, config.model, encoder.info, config.batch_size, config.ray_address
        )
    return run_local(
        pending, decoder, encoder, config.batch_size, config.workers, config.worker_timeout_s
    )


def _format_of(encoder: ClipEncoder, config: EmbedConfig) -> EmbeddingFormat:
    info = encoder.info
    return EmbeddingFormat(
        model=info.model,
        pretrained=info.pretrained,
        dim=info.dim,
        preprocess=info.preprocess,
        embedding_dtype=config.embedding_dtype,
        text_embeddings=config.embed_captions,
    )


def _open_collection(config: EmbedConfig, fmt: EmbeddingFormat) -> Manifest:
    """The existing collection, cleaned of a crashed run's leftovers, or a new one."""
    for path in remove_temporary_files(config.out):
        log.info("removed %s, left by an interrupted run", path.name)
    manifest = read_manifest(config.out)
    for path in orphan_files(config.out, manifest):
        log.info("removed %s: written but never committed by an interrupted run", path.name)
        path.unlink()
    if manifest is None:
        manifest = Manifest(embedding=fmt, clipsearch_version=VERSION)
        write_manifest(config.out, manifest)
        return manifest
    if why := manifest.embedding.mismatch(fmt):
        raise ManifestError(
            f"refusing to add to {config.out}: {why}. Write to a new --out, or use the "
            "model and flags the collection was made with."
        )
    return manifest


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")
