"""Choosing a FAISS index from (vectors, dim, memory budget): pure arithmetic, no I/O.

The figures follow the FAISS wiki's guidelines ("Guidelines to choose an index",
"Indexing 1M vectors"): exact search while a query can afford to scan everything;
otherwise IVF with nlist near 4*sqrt(N) (the wiki says 4..16*sqrt(N); 2*sqrt(N) for
fast-scan codes, measured below), an HNSW coarse quantizer once nlist reaches 2^14,
50 training points per list (the wiki: at least 39), and as much of the vector as the
budget holds per entry. IVF candidates
are re-ranked with exact float16 vectors memory-mapped from disk, which do not count
against the budget: that is what lifts recall past the quantisation ceiling, and it
restores exact inner-product scores.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum

# Up to this many vectors a single-thread exact scan stays within a few milliseconds.
EXACT_MAX_VECTORS = 50_000
MIN_POINTS_PER_LIST = 39
TARGET_POINTS_PER_LIST = 50
HNSW_QUANTIZER_MIN_NLIST = 1 << 14
ID_BYTES = 8  # FAISS stores an int64 id beside every code
FAST_SCAN_BLOCK = 32  # fast-scan inverted lists hold codes in blocks of this many
DEFAULT_RERANK_CANDIDATES = 100


class SearchKnob(StrEnum):
    NONE = "none"  # exact search: nothing to tune
    NPROBE = "nprobe"


@dataclass(frozen=True)
class IndexPlan:
    factory: str
    nlist: int  # 0 for exact search
    train_size: int  # vectors to train on (0: no training)
    knob: SearchKnob
    rerank: bool  # re-rank candidates with exact vectors from disk
    bytes_per_vector: float  # RAM the codes and ids take per vector
    reason: str


def parse_size(text: str) -> int:
    """'4G', '512M', '100MB', '1.5GiB', '1000000' -> bytes."""
    value = text.strip().upper().removesuffix("IB").removesuffix("B")
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
    factor = units.get(value[-1:], 1)
    number = value[:-1] if value[-1:] in units else value
    try:
        size = int(float(number) * factor)
    except ValueError as err:
        raise ValueError(f"{text!r} is not a size like 4G, 512M or 100MB") from err
    if size <= 0:
        raise ValueError(f"{text!r}: the memory budget must be positive")
    return size


# Fast-scan codes scan long lists cheaply, so they take half as many, twice as long.
# Measured on 1M x 768 CLIP-like vectors at 104 bytes each, IVF2048 against IVF4096:
# build 157 s instead of 211 s, and text-like queries (off the images' manifold, so
# their neighbours spread over more small lists) 0.959 recall@10 at 1,036 queries/s
# instead of 0.946 at 617; image-like queries equal (0.987).
LISTS_PER_SQRT_N = 4
FAST_SCAN_LISTS_PER_SQRT_N = 2


def choose_nlist(n: int, per_sqrt_n: int = LISTS_PER_SQRT_N) -> int:
    """A power of two near per_sqrt_n * sqrt(N) (4: the low end of the wiki's 4..16).

    The low end keeps k-means affordable on a CPU (its cost grows with nlist times the
    training points, themselves proportional to nlist).
    """
    target = per_sqrt_n * math.sqrt(n)
    nlist = 1 << max(0, round(math.log2(target)))
    # Every list needs MIN_POINTS_PER_LIST training points, and there are only n vectors.
    while nlist > 1 and nlist * MIN_POINTS_PER_LIST > n:
        nlist //= 2
    return nlist


def plan_index(n: int, dim: int, budget: int, on_disk: bool = False) -> IndexPlan:
    """The index for n vectors of dim dimensions within `budget` bytes of RAM."""
    if n <= 0:
        raise ValueError("cannot plan an index for an empty collection")
    flat_bytes = dim * 4 + ID_BYTES
    if n <= EXACT_MAX_VECTORS and n * flat_bytes <= budget and not on_disk:
        return IndexPlan(
            "Flat", 0, 0, SearchKnob.NONE, False, flat_bytes,
            f"{n:,} vectors: exact search is fast enough",
        )  # fmt: skip
    coarse = _Coarse.of(n, dim, LISTS_PER_SQRT_N)
    per_vector = (budget - coarse.centroid_bytes) / n - ID_BYTES
    encodings = [("Flat", dim * 4), ("SQfp16", dim * 2), ("SQ8", dim)]
    for name, size in encodings:
        if per_vector >= size:
            return IndexPlan(
                f"{coarse.quantizer},{name}", coarse.nlist, coarse.train, SearchKnob.NPROBE,
                True, size + ID_BYTES, f"{name} codes ({size} bytes) fit the budget",
            )  # fmt: skip
    if not on_disk:
        coarse = _Coarse.of(n, dim, FAST_SCAN_LISTS_PER_SQRT_N)
    # The OPQ matrix (dim x dim floats at most) sits in RAM too; fast-scan lists are
    # stored in blocks of 32 codes, so each list wastes half a block on average.
    fixed = coarse.centroid_bytes + dim * dim * 4
    padded = n + (0 if on_disk else FAST_SCAN_BLOCK // 2 * coarse.nlist)
    per_vector = (budget - fixed - n * ID_BYTES) / padded
    return _pq_plan(n, dim, per_vector, coarse, on_disk)


@dataclass(frozen=True)
class _Coarse:
    """The coarse quantizer: its lists, factory prefix, training points and RAM."""

    nlist: int
    quantizer: str
    train: int
    centroid_bytes: int

    @staticmethod
    def of(n: int, dim: int, per_sqrt_n: int) -> _Coarse:
        nlist = choose_nlist(n, per_sqrt_n)
        hnsw = nlist >= HNSW_QUANTIZER_MIN_NLIST
        return _Coarse(
            nlist,
            f"IVF{nlist}_HNSW32" if hnsw else f"IVF{nlist}",
            min(n, TARGET_POINTS_PER_LIST * nlist),  # >= MIN_POINTS_PER_LIST * nlist
            nlist * dim * 4 * (2 if hnsw else 1),
        )


def _pq_plan(n: int, dim: int, per_vector: float, coarse: _Coarse, on_disk: bool) -> IndexPlan:
    # Fast-scan PQ (4-bit codes, SIMD in-register lookup) scans far faster than 8-bit PQ;
    # on-disk inverted lists hold only the classic layout, so --on-disk uses 8-bit PQ.
    bits = 8 if on_disk else 4
    m, rotated = pq_shape(dim, per_vector * 8 / bits)
    if m == 0:
        raise ValueError(
            f"a budget of {per_vector + ID_BYTES:.1f} bytes per vector is too small for "
            f"{n:,} vectors of {dim} dimensions: raise --memory-budget"
        )
    code = f"PQ{m}" if on_disk else f"PQ{m}x4fs"
    # OPQ rotates the space so each sub-quantizer gets an even share of the variance; its
    # output dimension is a multiple of m, so m need not divide the input dimension.
    factory = f"OPQ{m}_{rotated},{coarse.quantizer},{code}"
    size = m * bits / 8
    return IndexPlan(
        factory, coarse.nlist, coarse.train, SearchKnob.NPROBE, True, size + ID_BYTES,
        f"{code} codes ({size:g} bytes) with OPQ, re-ranked from float16 vectors on disk",
    )  # fmt: skip


def pq_shape(dim: int, max_m: float) -> tuple[int, int]:
    """Sub-quantizers (a multiple of 4, at most max_m) and the OPQ output dimension.

    The output keeps a multiple of m that is at least 90% of the input dimension, so a
    budget is not wasted because m must divide dim.
    """
    for m in range(int(min(dim, max_m)) // 4 * 4, 0, -4):
        rotated = dim // m * m
        if rotated >= 0.9 * dim:
            return m, rotated
    return 0, 0
