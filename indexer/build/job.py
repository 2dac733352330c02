"""`clipsearch build`: shards to a versioned, measured, atomically published FAISS index."""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path

import faiss
import numpy as np

from clipsearch.collection.manifest import EmbeddingFormat, Manifest, read_manifest
from clipsearch.errors import ClipsearchError
from clipsearch.index.fields import FieldSchema
from clipsearch.index.manifest import (
    CAPTIONS_ROWS_FILE,
    IDS_FILE,
    INDEX_FILE,
    IVFDATA_FILE,
    MANIFEST_FILE,
    REMOVED,
    VECTORS_FILE,
    CaptionsManifest,
    CurvePoint,
    IndexManifest,
    MeasuredDefaults,
    SourceShard,
    current_version,
    file_checksums,
)
from clipsearch.index.publish import new_workdir, next_version, publish, remove_abandoned_builds
from clipsearch.index.records import Record, RecordWriter
from clipsearch.index.version import CaptionIndex, IndexVersion, VectorIndex, ivf_of
from clipsearch.indexer.build import captions, evaluate, text_queries, train
from clipsearch.indexer.build.fields import build_fields
from clipsearch.indexer.build.live_rows import LiveChunk, LiveSet, iter_live, live_set
from clipsearch.indexer.build.plan import (
    DEFAULT_RERANK_CANDIDATES,
    IndexPlan,
    SearchKnob,
    plan_index,
)
from clipsearch.indexer.engine import Engine
from clipsearch.indexer.lock import exclusive
from clipsearch.types import QuerySource
from clipsearch.version import VERSION

log = logging.getLogger(__name__)
DEFAULT_BUDGET = 4 << 30


class BuildError(ClipsearchError):
    """The build cannot start or finish; the current index is untouched."""


@dataclass(frozen=True)
class BuildConfig:
    shards: Path
    out: Path
    memory_budget: int = DEFAULT_BUDGET
    index_factory: str | None = None
    target_recall: float = 0.95
    add: bool = False
    on_disk: bool = False
    engine: Engine = Engine.LOCAL
    ray_address: str | None = None
    keep_versions: int = 3
    eval_queries: int = 1000
    rerank_candidates: int = DEFAULT_RERANK_CANDIDATES
    # False (--no-caption-index): caption embeddings only measure text queries; no caption
    # index is built, and the image index gets the whole memory budget.
    index_captions: bool = True


class BuildKind(StrEnum):
    FULL = "full"  # every row indexed anew
    APPENDED = "appended"  # --add: the parent's rows kept, new ones appended
    # --add onto an exact (Flat) version: rebuilt, since exact indexes number rows by
    # position and cannot drop one in place; at their size (up to 50,000) that is fast.
    REBUILT = "rebuilt"


@dataclass(frozen=True)
class BuildResult:
    path: Path
    manifest: IndexManifest
    kind: BuildKind
    added: int
    removed: int

    def describe(self) -> str:
        if self.kind is BuildKind.APPENDED:
            return (
                f"published {self.path}: {self.manifest.parent_version} "
                f"+{self.added:,} rows, -{self.removed:,} rows"
            )
        if self.kind is BuildKind.REBUILT:
            return (
                f"published {self.path}: rebuilt with {self.manifest.count:,} vectors "
                "(--add appends to IVF indexes; an exact index is rebuilt, which is fast)"
            )
        return f"published {self.path}: {self.manifest.count:,} vectors"


@contextmanager
def _phase(what: str) -> Iterator[None]:
    """Log how long each step of a long build takes, as it finishes."""
    started = time.monotonic()
    log.info("%s...", what)
    yield
    log.info("%s: done in %.1f s", what, time.monotonic() - started)


def run_build(config: BuildConfig) -> BuildResult:
    started = time.monotonic()
    shards = read_manifest(config.shards)
    if shards is None:
        raise BuildError(f"{config.shards} has no manifest.json: run `clipsearch embed` first")
    if config.engine is Engine.RAY and not config.on_disk:
        log.info("--engine ray merges into an on-disk index: --on-disk is implied")
        config = replace(config, on_disk=True)
    config.out.mkdir(parents=True, exist_ok=True)
    with exclusive(config.out, "build"):
        remove_abandoned_builds(config.out)
        parent = _parent(config, shards.embedding)
        workdir = new_workdir(config.out)
        try:
            live = live_set(config.shards, shards)
            gathered = _gather_captions(config, shards.embedding, live, workdir)
            indexed = gathered if config.index_captions else None
            budget, caption_budget = captions.budget_share(
                config.memory_budget, live.count, indexed.count if indexed else 0
            )
            if parent is not None and parent.manifest.nlist:
                plan, added, removed = _extend(config, parent, live, workdir)
                kind = BuildKind.APPENDED
            else:
                plan, added, removed = _full(config, shards.embedding, live, workdir, budget)
                kind = BuildKind.FULL if parent is None else BuildKind.REBUILT
            with _phase("writing the fields filters test (fields.parquet)"):
                fields = build_fields(workdir, shards, live)
            caption_plan, caption_queries = None, None
            ids = np.load(workdir / IDS_FILE, mmap_mode="r")
            if indexed is not None:
                with _phase(f"indexing {indexed.count:,} captions"):
                    caption_plan = captions.build_index(
                        workdir, indexed, ids, caption_budget, config.on_disk
                    )
            elif gathered is not None:
                log.info("captions measure text queries only: no caption index (as asked)")
                caption_queries = captions.queries_only(workdir, gathered, ids, config.eval_queries)
            plans = _Plans(plan, caption_plan, caption_queries)
            manifest = _evaluate(config, shards, plans, workdir, parent, fields, started)
            path = publish(workdir, config.out, manifest.version, config.keep_versions)
        except BaseException:
            shutil.rmtree(workdir, ignore_errors=True)
            raise
    return BuildResult(path, manifest, kind, added, removed)


def _parent(config: BuildConfig, fmt: EmbeddingFormat) -> IndexVersion | None:
    """With --add, the version to extend; refuses one made by another model."""
    if not config.add:
        return None
    path = current_version(config.out)
    if path is None:
        log.info("--add: %s has no index yet, building one from scratch", config.out)
        return None
    parent = IndexVersion(path)
    theirs = parent.manifest
    if why := theirs.space.mismatch(fmt.space):
        raise BuildError(
            f"refusing --add: the index in {config.out} and the shards in {config.shards} "
            f"hold embeddings of different models ({why}); build into a new --out"
        )
    if config.on_disk != theirs.on_disk:
        raise BuildError("--add must use the same --on-disk setting as the index it extends")
    return parent


def _gather_captions(
    config: BuildConfig, fmt: EmbeddingFormat, live: LiveSet, workdir: Path
) -> captions.Gathered | None:
    """With caption embeddings in the shards, the live ones, written to the work folder."""
    if not fmt.text_embeddings:
        return None
    with _phase("reading the caption embeddings"):
        gathered = captions.gather(config.shards, live, fmt.dim, workdir)
    if gathered is None and live.count:
        log.warning("the shards hold caption embeddings, but no item has a caption now")
    return gathered


def _full(
    config: BuildConfig, fmt: EmbeddingFormat, live: LiveSet, workdir: Path, budget: int
) -> tuple[IndexPlan, int, int]:
    """`budget`: the RAM the image index may take (the captions' share left out)."""
    count = live.count
    if count == 0:
        raise BuildError(f"{config.shards} holds no embedded images")
    plan = _plan(config, count, fmt.dim, budget)
    log.info("building %s over %d vectors: %s", plan.factory, count, plan.reason)
    vectors = np.lib.format.open_memmap(
        workdir / VECTORS_FILE, mode="w+", dtype=np.float16, shape=(count, fmt.dim)
    )
    ids = np.empty(count, dtype=np.int64)
    with _phase(f"reading {count:,} vectors from {len(live.files)} shards"):
        with RecordWriter(workdir) as records:
            records.write(_fill(iter_live(config.shards, live, fmt.dim), vectors, ids, 0))
        vectors.flush()
        np.save(workdir / IDS_FILE, ids)
    index = train.new_index(plan.factory, fmt.dim)
    if not index.is_trained:  # exact indexes have nothing to learn
        with _phase(f"training on {min(count, plan.train_size):,} vectors"):
            train.train(index, vectors[train.training_rows(count, plan.train_size)])
    with _phase(f"adding {count:,} vectors"):
        if config.engine is Engine.RAY:
            # Ray is imported only when asked for.
            from clipsearch.indexer.build.add_ray import add_with_ray

            path = workdir / VECTORS_FILE
            add_with_ray(index, path, count, workdir, workdir / IVFDATA_FILE, config.ray_address)
        else:
            if config.on_disk:
                train.use_on_disk_lists(index, workdir / IVFDATA_FILE)
            train.add_rows(index, vectors, 0, count)
    train.write_index(index, workdir / INDEX_FILE)
    return _with_nlist(plan, index), count, 0


def _extend(
    config: BuildConfig, parent: IndexVersion, live: LiveSet, workdir: Path
) -> tuple[IndexPlan, int, int]:
    """--add: the parent's rows, minus deleted and changed items, plus new rows appended."""
    known = {s.file for s in parent.manifest.source_shards}
    fresh = LiveSet([f for f in live.files if f.entry.file not in known])
    ids_by_file = {f.entry.file: f.ids[f.mask] for f in live.files}
    none = np.empty(0, np.int64)
    fresh_ids = np.concatenate([ids_by_file[f.entry.file] for f in fresh.files] or [none])
    live_ids = np.concatenate([*ids_by_file.values()] or [none])
    old_ids = np.asarray(parent.ids)
    gone = (old_ids != REMOVED) & (~np.isin(old_ids, live_ids) | np.isin(old_ids, fresh_ids))
    removed_rows = np.flatnonzero(gone)
    start, added = len(old_ids), len(fresh_ids)
    dim = parent.manifest.dim

    vectors = np.lib.format.open_memmap(
        workdir / VECTORS_FILE, mode="w+", dtype=np.float16, shape=(start + added, dim)
    )
    vectors[:start] = parent.vectors
    ids = np.concatenate([np.where(gone, REMOVED, old_ids), np.empty(added, np.int64)])
    with RecordWriter.continuing(parent.path, workdir) as records:
        records.write(_fill(iter_live(config.shards, fresh, dim), vectors, ids, start))
    vectors.flush()
    np.save(workdir / IDS_FILE, ids)

    if parent.manifest.on_disk:
        shutil.copyfile(parent.path / IVFDATA_FILE, workdir / IVFDATA_FILE)
        shutil.copyfile(parent.path / INDEX_FILE, workdir / INDEX_FILE)
        index = faiss.read_index(str(workdir / INDEX_FILE), faiss.IO_FLAG_ONDISK_SAME_DIR)
    else:
        index = faiss.read_index(str(parent.path / INDEX_FILE))
    if len(removed_rows):
        index.remove_ids(faiss.IDSelectorBatch(removed_rows.astype(np.int64)))
    train.add_rows(index, vectors, start, start + added)
    train.write_index(index, workdir / INDEX_FILE)
    if len(removed_rows) > 0.25 * max(1, index.ntotal):
        log.warning("over a quarter of the rows were removed: a full rebuild would be smaller")
    plan = IndexPlan(
        parent.manifest.factory, parent.manifest.nlist, 0, SearchKnob.NPROBE,
        parent.manifest.rerank_candidates > 0, 0.0, f"added to {parent.name}",
    )  # fmt: skip
    return plan, added, len(removed_rows)


def _plan(config: BuildConfig, count: int, dim: int, budget: int) -> IndexPlan:
    if not config.index_factory:
        try:
            return plan_index(count, dim, budget, config.on_disk)
        except ValueError as err:
            raise BuildError(str(err)) from err
    index = train.new_index(config.index_factory, dim)  # fails early on a bad string
    ivf = ivf_of(index)
    nlist = ivf.nlist if ivf is not None else 0
    train_size = min(count, max(100 * nlist, 50_000))
    rerank = nlist > 0  # IVF indexes rank by L2 and are re-ranked by inner product
    knob = SearchKnob.NPROBE if nlist else SearchKnob.NONE
    return IndexPlan(config.index_factory, nlist, train_size, knob, rerank, 0.0, "--index-factory")


def _with_nlist(plan: IndexPlan, index: faiss.Index) -> IndexPlan:
    ivf = ivf_of(index)
    return replace(plan, nlist=ivf.nlist if ivf is not None else 0)


def _fill(
    chunks: Iterator[LiveChunk], vectors: np.ndarray, ids: np.ndarray, start: int
) -> Iterator[Record]:
    """Copy each chunk's vectors and ids into place, passing its records on."""
    row = start
    for chunk in chunks:
        n = len(chunk.ids)
        vectors[row : row + n] = chunk.vectors
        ids[row : row + n] = chunk.ids
        row += n
        yield from chunk.records


@dataclass(frozen=True)
class _Plans:
    images: IndexPlan
    captions: IndexPlan | None  # None: no captions indexed
    # Captions kept as text queries only (--no-caption-index); with a caption index the
    # text queries are sampled from it instead.
    caption_queries: text_queries.TextQueries | None = None


@dataclass(frozen=True)
class _Measured:
    curve: list[CurvePoint]
    chosen: CurvePoint
    queries: int
    own_exact: float | None  # queries with a known match: how often exact search finds it

    def defaults(self, source: QuerySource) -> MeasuredDefaults:
        return MeasuredDefaults(
            source, self.chosen.nprobe, self.chosen.candidates, self.curve, self.queries,
            self.own_exact,
        )  # fmt: skip


def _evaluate(
    config: BuildConfig,
    shards: Manifest,
    plans: _Plans,
    workdir: Path,
    parent: IndexVersion | None,
    fields: FieldSchema,
    started: float,
) -> IndexManifest:
    """Measure recall against exact search, pick the cheapest nprobe reaching the target:
    for image and text queries on the images, and on the captions when there are any."""
    ids = np.load(workdir / IDS_FILE, mmap_mode="r")
    fmt = shards.embedding
    plan = plans.images
    draft = IndexManifest(
        version=next_version(config.out),
        model=fmt.model,
        pretrained=fmt.pretrained,
        dim=fmt.dim,
        preprocess=fmt.preprocess,
        factory=plan.factory,
        count=int((ids != REMOVED).sum()),
        rows=len(ids),
        nlist=plan.nlist,
        rerank_candidates=config.rerank_candidates if plan.rerank else 0,
        default_nprobe=1 if plan.nlist else 0,
        target_recall=config.target_recall,
        recall_curve=[],
        eval_queries=0,
        shards_dir=str(config.shards.resolve()),
        source_shards=[SourceShard(f.file, f.sha256, f.rows) for f in shards.files],
        build_seconds=0.0,
        created=datetime.now(UTC).isoformat(timespec="seconds"),
        clipsearch_version=VERSION,
        parent_version=parent.name if parent else None,
        on_disk=config.on_disk,
        fields=list(fields.fields),
        unfilterable=fields.unfilterable,
        captions=_draft_captions(config, plans.captions, workdir),
    )
    (workdir / MANIFEST_FILE).write_text(draft.to_json())
    version = IndexVersion(workdir)
    images = _measure(config, version.images, _held_out(config, version.images, version.ids), plan)
    manifest = replace(
        draft,
        default_nprobe=images.chosen.nprobe,
        rerank_candidates=images.chosen.candidates,
        recall_curve=images.curve,
        eval_queries=images.queries,
        text_queries=_measure_text(config, fmt, version, plans, images),
    )
    if version.captions is not None and manifest.captions is not None and plans.captions:
        on_captions = _Captions(version.captions, plans.captions, manifest.captions)
        manifest = replace(manifest, captions=_measure_captions(config, version, on_captions))
    manifest = replace(
        manifest,
        build_seconds=round(time.monotonic() - started, 2),
        files=file_checksums(workdir),
    )
    (workdir / MANIFEST_FILE).write_text(manifest.to_json())
    return manifest


def _draft_captions(
    config: BuildConfig, plan: IndexPlan | None, workdir: Path
) -> CaptionsManifest | None:
    """The captions' section before they are measured: the plan's settings."""
    if plan is None:
        return None
    count = len(np.load(workdir / CAPTIONS_ROWS_FILE, mmap_mode="r"))
    return CaptionsManifest(
        count=count,
        factory=plan.factory,
        nlist=plan.nlist,
        rerank_candidates=config.rerank_candidates if plan.rerank else 0,
        default_nprobe=1 if plan.nlist else 0,
        recall_curve=[],
        eval_queries=0,
    )


@dataclass(frozen=True)
class _Captions:
    index: CaptionIndex
    plan: IndexPlan
    draft: CaptionsManifest  # its section of the manifest, before measuring


def _measure_captions(
    config: BuildConfig, version: IndexVersion, captions: _Captions
) -> CaptionsManifest:
    """The caption index: text queries (held-out captions, its top-level settings) and
    image queries (the version's images, sampled)."""
    on_captions, plan = captions.index, captions.plan
    held_out = _held_out(config, on_captions, on_captions.item_rows, "caption ")
    found = _measure(config, on_captions, held_out, plan, "caption ")
    rows = evaluate.sample_rows(version.ids, config.eval_queries)
    with _phase(f"exact neighbours of {len(rows):,} image queries among the captions"):
        pictures = evaluate.outside_eval_set(
            np.asarray(version.vectors[rows], np.float32), on_captions.vectors,
            on_captions.item_rows,
        )  # fmt: skip
    by_images = _measure(config, on_captions, pictures, plan, "image-to-caption ")
    return replace(
        captions.draft,
        default_nprobe=found.chosen.nprobe,
        rerank_candidates=found.chosen.candidates,
        recall_curve=found.curve,
        eval_queries=found.queries,
        image_queries=by_images.defaults(QuerySource.IMAGES),
    )


def _held_out(
    config: BuildConfig, index: VectorIndex, ids: np.ndarray, what: str = ""
) -> evaluate.EvalSet:
    """Up to --eval-queries live rows of `index` as queries, with their exact neighbours."""
    count = min(config.eval_queries, int((np.asarray(ids) != REMOVED).sum()))
    with _phase(f"exact neighbours of {count:,} held-out {what}queries"):
        return evaluate.make_eval_set(index.vectors, ids, config.eval_queries)


def _measure_text(
    config: BuildConfig, fmt: EmbeddingFormat, version: IndexVersion, plans: _Plans,
    images: _Measured,
) -> MeasuredDefaults:  # fmt: skip
    """Text queries against the images: caption embeddings, else the model's prompts,
    else not measured (with a warning) and given the image settings."""
    if plans.caption_queries is not None:
        queries = plans.caption_queries
    elif version.captions is not None:
        queries = text_queries.from_captions(version.captions, config.eval_queries)
    else:
        with _phase("embedding the prompt set with the collection's model"):
            found = text_queries.from_prompts(fmt, config.eval_queries)
        if isinstance(found, text_queries.Unavailable):
            fallback = images.defaults(QuerySource.HELD_OUT)
            log.warning(
                "text queries not measured: %s. Text queries get the image queries' settings "
                "(nprobe %d, re-rank %d); put the model's weights on this host (see "
                "`clipsearch models`) and build again to measure them",
                found.reason, fallback.default_nprobe, fallback.rerank_candidates,
            )  # fmt: skip
            return fallback.copied(found.reason)
        queries = found
    log.info("text queries: %d from %s", len(queries.vectors), queries.source.value)
    with _phase(f"exact neighbours of {len(queries.vectors):,} text queries"):
        evalset = evaluate.outside_eval_set(
            queries.vectors, version.vectors, version.ids, queries.own_rows
        )
    measured = _measure(config, version.images, evalset, plans.images, "text ")
    if measured.own_exact is not None and measured.chosen.own_image_at_10 is not None:
        log.info(
            "text queries find their caption's own image in the top 10 %.3f of the time "
            "(exact search: %.3f)", measured.chosen.own_image_at_10, measured.own_exact,
        )  # fmt: skip
    return measured.defaults(queries.source)


def _measure(
    config: BuildConfig,
    index: VectorIndex,
    evalset: evaluate.EvalSet,
    plan: IndexPlan,
    what: str = "",
) -> _Measured:
    """Tune one index for one kind of queries; `what` names them in the log ("" for
    image queries on the images)."""
    steps = [config.rerank_candidates * f for f in (1, 2, 4, 8)] if plan.rerank else [0]
    with _phase(f"measuring {what}recall against speed"):
        curve, chosen = evaluate.tune(index, evalset, plan.nlist, config.target_recall, steps)
    if chosen.recall_at_10 < config.target_recall:
        log.warning(
            "%srecall@10 target %.3f not reached: best %.3f at nprobe %d with %d candidates; "
            "a larger --memory-budget or another --index-factory would reach it",
            what, config.target_recall, chosen.recall_at_10, chosen.nprobe, chosen.candidates,
        )  # fmt: skip
    return _Measured(curve, chosen, len(evalset.queries), evalset.own_at_10_exact)
