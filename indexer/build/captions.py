"""The caption part of a version, for Target.CAPTIONS: the live items' caption embeddings
(`clipsearch embed --embed-captions`), which row of the version each belongs to, and a
FAISS index over them, planned by the same planner as the images.

Full builds and `--add` alike gather every live caption from the shards and index them
afresh: the simplest way for `--add` to stay right (the captions of removed or changed
items gone, new ones in). It costs a read of the shards' caption column and a new caption
index; the image index is still extended in place.

The planner always chooses the caption index (`--index-factory` names the image index's),
within the captions' share of `--memory-budget`; `--on-disk` applies to both.

With `--no-caption-index` the captions only measure text queries: a sample of them is
kept in memory as evaluation queries, and the version holds no caption file (the whole
budget goes to the images).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from clipsearch.errors import ClipsearchError
from clipsearch.index.manifest import (
    CAPTIONS_INDEX_FILE,
    CAPTIONS_IVFDATA_FILE,
    CAPTIONS_ROWS_FILE,
    CAPTIONS_VECTORS_FILE,
    REMOVED,
)
from clipsearch.index.vector_index import ivf_of
from clipsearch.indexer.build import train
from clipsearch.indexer.build.live_rows import LiveSet, iter_live_captions
from clipsearch.indexer.build.plan import IndexPlan, plan_index
from clipsearch.indexer.build.text_queries import TextQueries
from clipsearch.types import QuerySource

log = logging.getLogger(__name__)
COPY_CHUNK_ROWS = 65_536
GATHERING_FILE = "captions.gathering.npy"  # removed before the version's checksums


@dataclass(frozen=True)
class Gathered:
    """Caption vectors written to the work folder, row by row, and their items."""

    ids: np.ndarray  # caption row -> item id

    @property
    def count(self) -> int:
        return len(self.ids)


def gather(folder: Path, live: LiveSet, dim: int, workdir: Path) -> Gathered | None:
    """Write the live items' caption vectors (float16, as vectors.npy) to the work folder;
    None (and nothing written) when no live item has a caption.

    Items without a caption are left out, so the count is known only at the end: rows go
    into a file sized for every live item, copied to one of the right size if some had
    none. Memory holds one shard at a time, as for the images."""
    bound = live.count
    if bound == 0:
        return None
    spare_path = workdir / GATHERING_FILE
    spare = np.lib.format.open_memmap(spare_path, mode="w+", dtype=np.float16, shape=(bound, dim))
    ids, row = [], 0
    for chunk in iter_live_captions(folder, live.files, dim):
        spare[row : row + len(chunk.ids)] = chunk.vectors
        ids.append(chunk.ids)
        row += len(chunk.ids)
    spare.flush()
    final = workdir / CAPTIONS_VECTORS_FILE
    if row == bound and row:
        del spare
        os.replace(spare_path, final)
    elif row:
        vectors = np.lib.format.open_memmap(final, mode="w+", dtype=np.float16, shape=(row, dim))
        for start in range(0, row, COPY_CHUNK_ROWS):
            stop = min(row, start + COPY_CHUNK_ROWS)
            vectors[start:stop] = spare[start:stop]
        vectors.flush()
        del spare, vectors
    else:
        del spare
    spare_path.unlink(missing_ok=True)
    return Gathered(np.concatenate(ids)) if ids else None


def budget_share(budget: int, images: int, captions: int) -> tuple[int, int]:
    """The RAM budget split between the image and the caption index by their vectors:
    the budget counts what a served version holds in RAM, and that is both indexes."""
    for_captions = budget * captions // max(1, images + captions)
    return budget - for_captions, for_captions


def build_index(
    workdir: Path, gathered: Gathered, item_ids: np.ndarray, budget: int, on_disk: bool
) -> IndexPlan:
    """Write each caption's row of the version (`item_ids`: the version's ids.npy) and the
    caption index; returns the plan it followed."""
    np.save(workdir / CAPTIONS_ROWS_FILE, rows_of(gathered.ids, item_ids))
    vectors = np.load(workdir / CAPTIONS_VECTORS_FILE, mmap_mode="r")
    count, dim = vectors.shape
    try:
        plan = plan_index(count, dim, budget, on_disk)
    except ValueError as err:
        raise CaptionBuildError(f"the caption index: {err}") from err
    log.info("indexing %s captions with %s: %s", f"{count:,}", plan.factory, plan.reason)
    index = train.new_index(plan.factory, dim)
    if not index.is_trained:
        log.info("training the caption index on %s captions", f"{min(count, plan.train_size):,}")
        train.train(index, vectors[train.training_rows(count, plan.train_size)])
    if on_disk:
        train.use_on_disk_lists(index, workdir / CAPTIONS_IVFDATA_FILE)
    # Added in this process even with --engine ray (which adds the images): captions are
    # at most as many as the images, and usually fewer.
    train.add_rows(index, vectors, 0, count)
    train.write_index(index, workdir / CAPTIONS_INDEX_FILE)
    ivf = ivf_of(index)
    return replace(plan, nlist=ivf.nlist if ivf is not None else 0)


def queries_only(
    workdir: Path, gathered: Gathered, item_ids: np.ndarray, count: int, seed: int = 0
) -> TextQueries:
    """Captions as text evaluation queries without a caption index: up to `count` of them,
    sampled as text_queries.from_captions samples an indexed set, with their items' rows
    (`item_ids`: the version's ids.npy). The gathered vectors are removed from the work
    folder, so the version holds no caption file."""
    path = workdir / CAPTIONS_VECTORS_FILE
    vectors = np.load(path, mmap_mode="r")
    rng = np.random.default_rng(seed)
    total = len(vectors)
    picked = np.sort(rng.choice(total, size=min(count, total), replace=False))
    sample = np.asarray(vectors[picked], dtype=np.float32)
    del vectors
    path.unlink()
    return TextQueries(QuerySource.CAPTIONS, sample, rows_of(gathered.ids[picked], item_ids))


class CaptionBuildError(ClipsearchError):
    """The captions cannot be indexed as asked."""


def rows_of(caption_ids: np.ndarray, item_ids: np.ndarray) -> np.ndarray:
    """The row of each caption's item among the version's rows (removed rows excluded:
    after `--add`, a changed item's old row is removed and its new row is live)."""
    live = np.flatnonzero(np.asarray(item_ids) != REMOVED)
    order = live[np.argsort(item_ids[live], kind="stable")]
    sorted_ids = item_ids[order]
    at = np.searchsorted(sorted_ids, caption_ids)
    found = at < len(order)
    found[found] = sorted_ids[at[found]] == caption_ids[found]
    if not found.all():
        raise RuntimeError("a live caption has no live item row: the build is inconsistent")
    return order[at]
