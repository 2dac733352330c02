"""Index planning is pure arithmetic: a table of (vectors, dim, budget) -> factory."""

from __future__ import annotations

import pytest

from clipsearch.indexer.build.plan import SearchKnob, choose_nlist, parse_size, plan_index, pq_shape

MB, GB = 1 << 20, 1 << 30


@pytest.mark.parametrize(
    ("n", "dim", "budget", "on_disk", "factory"),
    [
        (10_000, 768, 4 * GB, False, "Flat"),  # small: exact search
        (50_000, 1024, 4 * GB, False, "Flat"),
        (10_000, 768, 10 * MB, False, "IVF256,SQ8"),  # exact would not fit
        (1_000_000, 768, 4 * GB, False, "IVF4096,Flat"),
        (1_000_000, 768, 2 * GB, False, "IVF4096,SQfp16"),
        (1_000_000, 768, 1 * GB, False, "IVF4096,SQ8"),
        (1_000_000, 768, 100 * MB, False, "OPQ152_760,IVF2048,PQ152x4fs"),  # fast-scan: 2*sqrt(N)
        (1_000_000, 768, 100 * MB, True, "OPQ80_720,IVF4096,PQ80"),  # on disk: 8-bit codes
        (1_000_000, 1024, 100 * MB, False, "OPQ160_960,IVF2048,PQ160x4fs"),
        (100_000_000, 768, 16 * GB, False, "OPQ256_768,IVF16384_HNSW32,PQ256x4fs"),
        (60_000, 768, 8 * MB, False, "OPQ116_696,IVF512,PQ116x4fs"),
    ],
)
def test_plan(n: int, dim: int, budget: int, on_disk: bool, factory: str) -> None:
    plan = plan_index(n, dim, budget, on_disk)
    assert plan.factory == factory
    assert plan.knob is (SearchKnob.NONE if factory == "Flat" else SearchKnob.NPROBE)
    if plan.nlist:
        assert 39 * plan.nlist <= plan.train_size <= min(n, 256 * plan.nlist)
        assert plan.bytes_per_vector * n <= budget
    if "OPQ" in factory:  # everything in RAM: centroids, rotation, padded codes, ids
        centroids = plan.nlist * dim * 4 * (2 if "HNSW" in factory else 1)
        padding = 0 if on_disk else 16 * plan.nlist * (plan.bytes_per_vector - 8)
        assert centroids + dim * dim * 4 + n * plan.bytes_per_vector + padding <= budget
    assert plan.rerank == (factory != "Flat")


@pytest.mark.parametrize(
    ("dim", "max_m", "shape"),
    [(768, 143.4, (140, 700)), (768, 128, (128, 768)), (64, 500, (64, 64)), (768, 3, (0, 0))],
)
def test_pq_shape_uses_the_budget(dim: int, max_m: float, shape: tuple[int, int]) -> None:
    assert pq_shape(dim, max_m) == shape


def test_too_small_a_budget_is_refused_with_advice() -> None:
    with pytest.raises(ValueError, match="--memory-budget"):
        plan_index(1_000_000, 768, 8 * MB)


@pytest.mark.parametrize(
    ("n", "nlist"), [(1_000, 16), (10_000, 256), (1_000_000, 4096), (10**8, 32768), (100, 2)]
)
def test_nlist_follows_faiss_guidance(n: int, nlist: int) -> None:
    assert choose_nlist(n) == nlist
    assert 39 * nlist <= n


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("4G", 4 * GB),
        ("512M", 512 * MB),
        ("100MB", 100 * MB),
        ("1.5GiB", 3 * GB // 2),
        ("1000", 1000),
    ],
)
def test_parse_size(text: str, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["lots", "0", "-1G", ""])
def test_parse_size_refuses_nonsense(text: str) -> None:
    with pytest.raises(ValueError):
        parse_size(text)
