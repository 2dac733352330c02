"""`clipsearch import`: embeddings made elsewhere to a collection of Parquet shards.

Like `clipsearch embed`, without the model: everything that can be refused (the source,
the model's dimension, row counts, uris, non-finite vectors, a collection of another
model) is checked before anything is written; shards are committed one at a time, so a
rerun resumes; rows are stamped by their files' sizes and modification times and their
row number, so a rerun imports only what changed and records what is gone as deleted.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
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
from clipsearch.errors import ClipsearchError, Interrupted
from clipsearch.indexer.imports.base import ImportSource, ImportSourceError, SourceKind
from clipsearch.indexer.imports.checks import NormStats, check_rows, unit_rows
from clipsearch.indexer.imports.commit import ShardRows, ShardWriter
from clipsearch.indexer.imports.detect import list_parts
from clipsearch.indexer.imports.parts import Part, PartChunk
from clipsearch.indexer.imports.plan import (
    ImportPlan,
    PartListing,
    PartPlan,
    plan_import,
    row_stamp,
)
from clipsearch.indexer.imports.space import activation_warning, model_space, models_of_dim
from clipsearch.indexer.interrupt import StopRequest
from clipsearch.indexer.output import now, remove_leftovers, writing_to
from clipsearch.models import EmbeddingSpace, ModelSpec
from clipsearch.version import VERSION

log = logging.getLogger(__name__)
CHUNK_ROWS = 8192  # rows read at a time: 25 MB of 768-d float32


@dataclass(frozen=True)
class ImportConfig:
    source: ImportSource
    out: Path
    model: ModelSpec  # the model the vectors came from: no default, the user must say
    embedding_dtype: VectorDtype = VectorDtype.FLOAT16
    shard_size: int = 10_000
    quiet: bool = False


@dataclass(frozen=True)
class ImportSummary:
    kind: SourceKind
    imported: int
    unchanged: int
    deleted: int
    duplicates: int
    normalised: int  # vectors that were not unit length
    seconds: float
    shards: int

    @property
    def vectors_per_second(self) -> float:
        return self.imported / self.seconds if self.seconds > 0 else 0.0

    def describe(self) -> str:
        lines = [
            f"imported {self.imported:,} vectors ({self.kind.value}), unchanged "
            f"{self.unchanged:,}, deleted {self.deleted:,}",
            f"{self.vectors_per_second:,.0f} vectors/s over {self.seconds:.1f} s, "
            f"{self.shards} shard(s) written",
        ]
        if self.duplicates:
            lines.append(f"{self.duplicates:,} rows repeated an earlier row's uri: kept once")
        if self.normalised:
            lines.append(f"{self.normalised:,} vectors were normalised to unit length")
        return "\n".join(lines)


class ImportInterrupted(Interrupted):
    """The run stopped on a signal after committing what it had read."""


class NothingToImportError(ClipsearchError):
    """The source holds no vectors."""


@dataclass(frozen=True)
class _Prepared:
    kind: SourceKind
    parts: list[Part]
    manifest: Manifest
    plan: ImportPlan
    norms: NormStats


def run_import(config: ImportConfig) -> ImportSummary:
    """Import what is new or changed in the source. A run that fails before writing
    leaves the output folder as it found it."""
    started = time.monotonic()
    with writing_to(config.out, "import"):
        return _write(config, _prepare(config), started)


def _prepare(config: ImportConfig) -> _Prepared:
    """The source, the model, the collection and the plan, every pending vector checked;
    nothing written. Cheap checks come first, reading every vector last."""
    kind, parts = list_parts(config.source)
    space = model_space(config.model)
    if warning := activation_warning(config.model):
        log.warning("%s", warning)
    for part in parts:
        part.check_rows()
        for vectors in (part.vectors, part.text_vectors):
            if vectors is not None:
                _check_dim(vectors.label, vectors.dim, space)
    listings = [PartListing(part.stamp, part.uris()) for part in parts]
    if not sum(len(listing.uris) for listing in listings):
        raise NothingToImportError(f"{config.source.path} holds no vectors")
    manifest = read_manifest(config.out)
    fmt = _format(config, space, any(p.text_vectors for p in parts), manifest)
    state = collection_state(config.out, manifest) if manifest else {}
    plan = plan_import(listings, state)
    log.info(
        "%s (%s): %d new, %d changed, %d unchanged, %d deleted",
        config.source.path, kind.value, plan.new, plan.changed, plan.unchanged, len(plan.deleted),
    )  # fmt: skip
    norms = NormStats()
    for part, part_plan in zip(parts, plan.parts, strict=True):
        norms = _check_part(part, part_plan, space, norms)
    if warning := norms.describe():
        log.warning("%s", warning)
    manifest = manifest or Manifest(embedding=fmt, clipsearch_version=VERSION)
    return _Prepared(kind, parts, manifest, plan, norms)


def _format(
    config: ImportConfig,
    space: EmbeddingSpace,
    source_text: bool,
    manifest: Manifest | None,
) -> EmbeddingFormat:
    """The collection's format; refuses a collection of another model or vector type."""
    text = source_text
    if manifest is not None and manifest.embedding.text_embeddings != source_text:
        text = manifest.embedding.text_embeddings  # a collection keeps its columns
        if source_text:
            log.warning(
                "%s was started without caption embeddings: the source's text vectors are "
                "left out (import into a new --out to keep them)",
                config.out,
            )
    fmt = EmbeddingFormat(
        model=space.model,
        pretrained=space.pretrained,
        dim=space.dim,
        preprocess=space.preprocess,
        embedding_dtype=config.embedding_dtype,
        text_embeddings=text,
    )
    if manifest is not None and (why := manifest.embedding.mismatch(fmt)):
        raise ManifestError(
            f"refusing to add to {config.out}: {why}",
            hint="import into a new --out, or name the model (--model, --pretrained) and "
            "vector type (--float32) the collection was made with",
        )
    return fmt


def _check_dim(label: str, found: int | None, space: EmbeddingSpace) -> None:
    if found is None or found == space.dim:
        return
    others = models_of_dim(found)
    hint = "name the model the vectors came from with --model and --pretrained"
    if others:
        hint += f" ({found}-d models: {', '.join(others)})"
    raise ImportSourceError(
        f"{label}: {found}-d vectors, but {space.model}/{space.pretrained or '-'} makes "
        f"{space.dim}-d embeddings",
        hint=hint,
    )


def _check_part(part: Part, plan: PartPlan, space: EmbeddingSpace, norms: NormStats) -> NormStats:
    """Reads the part's pending vectors (and caption vectors): refuses missing, non-finite
    and zero image vectors and non-finite caption vectors; counts the ones not unit length."""
    for chunk, pending in _pending_chunks(part, plan, with_table=False):
        vectors = chunk.vectors
        _check_dim(part.label, vectors.vectors.shape[1], space)
        missing = np.flatnonzero(pending & ~vectors.present)
        if len(missing):
            raise ImportSourceError(
                f"{part.label} row {chunk.start + int(missing[0])}: no embedding (null)",
                hint="every row needs a vector: drop the rows without one",
            )
        found = check_rows(vectors.vectors, pending, part.label, chunk.start, "embedding")
        norms = norms.add(found)
        if chunk.text is not None and part.text_vectors is not None:
            _check_dim(part.text_vectors.label, chunk.text.vectors.shape[1], space)
            present = pending & chunk.text.present
            found = check_rows(
                chunk.text.vectors, present, part.text_vectors.label, chunk.start, "caption vector"
            )
            norms = norms.add(found)
    return norms


def _pending_chunks(
    part: Part, plan: PartPlan, with_table: bool
) -> Iterator[tuple[PartChunk, np.ndarray]]:
    """The part's chunks that hold pending rows, with a mask of those rows."""
    if not len(plan.rows):
        return
    wanted = np.zeros(int(plan.rows[-1]) + 1, dtype=bool)
    wanted[plan.rows] = True
    for chunk in part.chunks(CHUNK_ROWS, with_table):
        rows = len(chunk.vectors.present)
        pending = np.zeros(rows, dtype=bool)
        window = wanted[chunk.start : chunk.start + rows]
        pending[: len(window)] = window
        if pending.any():
            yield chunk, pending
        if chunk.start + rows >= len(wanted):
            return


def _write(config: ImportConfig, prepared: _Prepared, started: float) -> ImportSummary:
    remove_leftovers(config.out, prepared.manifest)
    run = prepared.manifest.next_run()
    record = RunRecord(run, config.source.path, now())
    manifest = prepared.manifest.with_run(record)
    write_manifest(config.out, manifest)
    writer = ShardWriter(config.out, manifest, run, config.shard_size)
    plan = prepared.plan
    writer.commit_deletions(plan.deleted)
    done = 0
    with (
        StopRequest() as stop,
        tqdm(total=plan.pending, unit="vec", disable=config.quiet, smoothing=0.1) as bar,
    ):
        for rows in _rows(prepared, writer.fmt):
            writer.add(rows)
            done += len(rows)
            bar.update(len(rows))
            if stop.requested:
                break
    writer.finish()  # what was read is committed, even when stopping early
    summary = ImportSummary(
        kind=prepared.kind,
        imported=writer.imported,
        unchanged=plan.unchanged,
        deleted=len(plan.deleted),
        duplicates=plan.duplicates,
        normalised=prepared.norms.off,
        seconds=time.monotonic() - started,
        shards=writer.shards_written,
    )
    finished = RunRecord(
        run,
        config.source.path,
        record.started,
        now(),
        embedded=summary.imported,
        unchanged=summary.unchanged,
        deleted=summary.deleted,
        interrupted=stop.requested,
    )
    write_manifest(config.out, writer.manifest.with_run(finished))
    if stop.requested:
        raise ImportInterrupted(
            f"interrupted after {done:,} of {plan.pending:,} vectors "
            f"({summary.imported:,} imported and committed)",
            hint="run the same command to resume: committed vectors are not imported again",
        )
    return summary


def _rows(prepared: _Prepared, fmt: EmbeddingFormat) -> Iterator[ShardRows]:
    """The pending rows of every part, in source order, ready for the shards."""
    for part, plan in zip(prepared.parts, prepared.plan.parts, strict=True):
        for chunk, pending in _pending_chunks(part, plan, with_table=True):
            yield _shard_rows(part, plan, chunk, pending, fmt)


def _shard_rows(
    part: Part, plan: PartPlan, chunk: PartChunk, pending: np.ndarray, fmt: EmbeddingFormat
) -> ShardRows:
    table = chunk.table
    assert table is not None and table.uris is not None
    picked = np.flatnonzero(pending)
    rows = chunk.start + picked
    text_vectors = text_present = None
    if fmt.text_embeddings:
        text_vectors = np.zeros((len(picked), fmt.dim), dtype=np.float32)
        text_present = np.zeros(len(picked), dtype=bool)
        if chunk.text is not None:
            text_vectors = unit_rows(chunk.text.vectors[picked])
            text_present = chunk.text.present[picked] & text_vectors.any(axis=1)
    return ShardRows(
        ids=plan.ids[np.searchsorted(plan.rows, rows)],
        uris=[table.uris[i] for i in picked],
        vectors=unit_rows(chunk.vectors.vectors[picked]),
        text_vectors=text_vectors,
        text_present=text_present,
        width=table.width[picked],
        height=table.height[picked],
        stamps=[row_stamp(part.stamp, int(r)) for r in rows],
        captions=[table.captions[i] for i in picked],
        metadata=[table.metadata[i] for i in picked],
    )
