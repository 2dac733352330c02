"""`clipsearch embed`: a source of images to a collection of Parquet shards, resumably."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from clipsearch.collection.manifest import (
    EmbeddingFormat,
    Manifest,
    ManifestError,
    RunRecord,
    VectorDtype,
    read_manifest,
    write_manifest,
)
from clipsearch.collection.shards import collection_state
from clipsearch.encoder import DEFAULT_MAX_PIXELS, ClipEncoder, DecodeFailure, load_encoder
from clipsearch.errors import ClipsearchError, Interrupted
from clipsearch.indexer.embed.commit import ShardCommitter
from clipsearch.indexer.embed.decode import Decoder
from clipsearch.indexer.embed.encode import EncodedBatch
from clipsearch.indexer.embed.engines.local import DEFAULT_WORKER_TIMEOUT_S, run_local
from clipsearch.indexer.embed.plan import EmbedPlan, PlannedItem, plan_embedding
from clipsearch.indexer.embed.sources import SourceSpec, detect_format, list_source
from clipsearch.indexer.embed.sources.directory import IMAGE_EXTENSIONS
from clipsearch.indexer.engine import Engine
from clipsearch.indexer.interrupt import StopRequest
from clipsearch.indexer.output import now, remove_leftovers, writing_to
from clipsearch.models import ModelSpec
from clipsearch.version import VERSION

log = logging.getLogger(__name__)


def decode_workers(cores: int) -> int:
    """Decoding processes for a host with `cores` usable cores: all but the one the main
    process needs to feed the encoder and write shards. A fixed 4 starved an H200: 406
    images/s with 4 workers on 16 cores, 836 with 14 (ViT-L-14, 640x480 JPEGs)."""
    return max(1, cores - 1)


def usable_cores() -> int:
    """Cores this process may run on (its affinity mask: a container's CPU set), not the
    machine's count."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


@dataclass(frozen=True)
class EmbedConfig:
    source: SourceSpec
    out: Path
    model: ModelSpec = field(default_factory=ModelSpec)
    batch_size: int = 32
    workers: int = field(default_factory=lambda: decode_workers(usable_cores()))
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
    setup_seconds: float = 0.0  # of `seconds`: loading the model, listing and planning

    @property
    def images_per_second(self) -> float:
        return self._processed / self.seconds if self.seconds > 0 else 0.0

    @property
    def embedding_rate(self) -> float:
        """Images per second once the model is loaded: what the pipeline itself sustains."""
        working = self.seconds - self.setup_seconds
        return self._processed / working if working > 0 else 0.0

    @property
    def _processed(self) -> int:
        return self.embedded + sum(self.skipped.values())

    def describe(self) -> str:
        skipped = sum(self.skipped.values())
        reasons = ", ".join(f"{n} {r.value}" for r, n in sorted(self.skipped.items()))
        lines = [
            f"embedded {self.embedded}, unchanged {self.unchanged}, "
            f"skipped {skipped}{f' ({reasons})' if reasons else ''}, deleted {self.deleted}",
            f"{self.images_per_second:.1f} images/s over {self.seconds:.1f} s "
            f"({self.embedding_rate:.1f} after {self.setup_seconds:.1f} s loading the model "
            f"and listing the source), {self.shards} shard(s) written",
        ]
        if self.duplicates:
            lines.append(f"{self.duplicates} duplicate uri(s) in the source were embedded once")
        return "\n".join(lines)


class EmbedInterrupted(Interrupted):
    """The run stopped on a signal after committing what it had encoded."""


class NothingToEmbedError(ClipsearchError):
    """The source lists no images."""


def run_embed(config: EmbedConfig) -> EmbedSummary:
    """Embed what is new or changed in the source. Everything that can fail before work
    starts (the source, the model, the collection's format) is checked before anything
    is written: a run that fails early leaves the output folder as it found it."""
    started = time.monotonic()
    with writing_to(config.out, "embed"):
        encoder, manifest, plan = _prepare(config)
        setup_s = time.monotonic() - started
        return _embed(config, encoder, manifest, plan, started, setup_s)


def _prepare(config: EmbedConfig) -> tuple[ClipEncoder, Manifest, EmbedPlan]:
    """The model, the collection (new or existing) and the plan, writing nothing."""
    detect_format(config.source)  # a missing or unreadable source fails before the model loads
    encoder = load_encoder(config.model)
    fmt = _format_of(encoder, config)
    manifest = read_manifest(config.out)
    if manifest is not None and (why := manifest.embedding.mismatch(fmt)):
        raise ManifestError(
            f"refusing to add to {config.out}: {why}",
            hint="write to a new --out, or use the model and flags the collection was made with",
        )
    state = collection_state(config.out, manifest) if manifest else {}
    plan = plan_embedding(list_source(config.source), state)
    if plan.new + plan.changed + plan.unchanged + plan.duplicates == 0:
        raise NothingToEmbedError(
            f"{config.source.url} holds no images",
            hint="check the path; a directory is searched for "
            f"{', '.join(sorted(IMAGE_EXTENSIONS))} files; tables and tar shards need "
            "--source-format when their files have other extensions",
        )
    log.info(
        "%s: %d new, %d changed, %d unchanged, %d deleted",
        config.source.url, plan.new, plan.changed, plan.unchanged, len(plan.deleted),
    )  # fmt: skip
    return encoder, manifest or Manifest(embedding=fmt, clipsearch_version=VERSION), plan


def _embed(
    config: EmbedConfig,
    encoder: ClipEncoder,
    manifest: Manifest,
    plan: EmbedPlan,
    started: float,
    setup_s: float,
) -> EmbedSummary:
    remove_leftovers(config.out, manifest)
    run = manifest.next_run()
    record = RunRecord(run, config.source.url, now())
    manifest = manifest.with_run(record)
    write_manifest(config.out, manifest)
    committer = ShardCommitter(config.out, manifest, plan.pending, config.shard_size, run)
    committer.commit_deletions(plan.deleted)
    done = 0
    with (
        StopRequest() as stop,
        tqdm(total=len(plan.pending), unit="img", disable=config.quiet, smoothing=0.1) as bar,
    ):
        for batch in _batches(plan.pending, encoder, config):
            committer.add(batch)
            done += len(batch.items)
            bar.update(len(batch.items))
            if committer.skipped:
                bar.set_postfix(skipped=sum(committer.skipped.values()))
            if stop.requested:
                break
    committer.finish()  # what was encoded is committed, even when stopping early
    summary = EmbedSummary(
        embedded=committer.embedded,
        unchanged=plan.unchanged,
        skipped=dict(committer.skipped),
        deleted=len(plan.deleted),
        duplicates=plan.duplicates,
        seconds=time.monotonic() - started,
        shards=committer.shards_written,
        setup_seconds=setup_s,
    )
    finished = RunRecord(
        run,
        config.source.url,
        record.started,
        now(),
        summary.embedded,
        summary.unchanged,
        sum(summary.skipped.values()),
        summary.deleted,
        interrupted=stop.requested,
    )
    write_manifest(config.out, committer.manifest.with_run(finished))
    if stop.requested:
        raise EmbedInterrupted(
            f"interrupted after {done:,} of {len(plan.pending):,} images "
            f"({summary.embedded:,} embedded and committed)",
            hint="run the same command to resume: committed images are not embedded again",
        )
    return summary


def _batches(
    pending: Sequence[PlannedItem], encoder: ClipEncoder, config: EmbedConfig
) -> Iterator[EncodedBatch]:
    tokenizer = encoder.tokenizer if config.embed_captions else None
    decoder = Decoder(encoder.transform, tokenizer, config.max_pixels, encoder.input_side)
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
