"""Adding vectors with Ray: row groups in parallel tasks, merged into one on-disk index."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import faiss
import numpy as np
import ray
from faiss.contrib.ondisk import merge_ondisk

from clipsearch.index.version import ivf_of
from clipsearch.indexer.build.train import add_rows, write_index
from clipsearch.indexer.ray_cluster import connect

log = logging.getLogger(__name__)
ROWS_PER_TASK = 250_000


@ray.remote
def _add_group(trained: np.ndarray, vectors_path: str, start: int, stop: int, out: str) -> str:
    index = faiss.deserialize_index(trained)
    add_rows(index, np.load(vectors_path, mmap_mode="r"), start, stop)
    write_index(index, Path(out))
    return out


def add_with_ray(
    index: faiss.Index,
    vectors_path: Path,
    count: int,
    workdir: Path,
    ivfdata: Path,
    address: str | None,
    rows_per_task: int = ROWS_PER_TASK,
) -> None:
    """Fill the trained, empty `index` with rows 0..count; its lists end up in `ivfdata`.

    Tasks read the vectors from `vectors_path`, so workers must see the build folder
    (one machine, or a shared filesystem on a cluster).
    """
    if ivf_of(index) is None or index.ntotal:
        raise ValueError("add_with_ray needs a trained, empty IVF index")
    connect(address)
    trained = faiss.serialize_index(index)
    groups = [(s, min(count, s + rows_per_task)) for s in range(0, count, rows_per_task)]
    log.info("adding %d vectors in %d Ray tasks", count, len(groups))
    pending = [
        _add_group.remote(trained, str(vectors_path), s, e, str(workdir / f".group-{s}.faiss"))
        for s, e in groups
    ]
    parts = ray.get(pending)
    # Reads the parts' lists memory-mapped, so they may exceed RAM together.
    merge_ondisk(index, parts, str(ivfdata))
    for part in parts:
        os.unlink(part)
