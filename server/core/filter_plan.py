"""Planning a filtered search, so that no filter costs recall: pure arithmetic from how
many rows the filter lets through.

- Few rows match: an exact scan of just their stored vectors. It is exact, and cheaper
  than any index search once it is short.
- Many match: the index, with an ID selector that skips the other rows as lists are
  scanned, and more lists visited the fewer rows match: enough lists to hold a fixed
  number of matching rows (the filtered neighbours lie in farther lists once each list
  holds only a few matching rows), and never fewer than the unfiltered nprobe grown
  gently with the selectivity (off-manifold queries, e.g. text, need more lists).
- An exact (Flat) index is scanned whole either way: its selector search is exact.

The constants come from `make bench-filter` (bench/filter.py: 1M CLIP-like 768-d vectors,
OPQ152_760,IVF2048,PQ152x4fs at default nprobe 4, one query at a time, one thread, 300
image-like and 300 text-like queries); the figures behind each are cited beside it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

# Up to this many matching rows the exact scan of their vectors (~1.6 us a row: numpy
# turns the float16 rows to float32) beats the index. Measured crossover, 1M vectors, one
# query's q/s: 900 rows exact 587-677, index 569-580 (583 lists); 1,100 rows exact
# 545-549, index 607-712 (477 lists, recall@10 0.997-1.0). Was 4,096: 1.6-6.5 ms a query
# where the index takes ~1. (A Flat index takes its selector search above it: faster
# for one query, 0.21 ms against 1.48 at 900 of 50k rows; slower for a batch of 32 at
# 4,096 rows, 39 ms against 21.)
EXACT_MAX_ROWS = 1_000
# The index visits at least nprobe / selectivity**NPROBE_EXPONENT lists (capped at
# nlist). For image-like queries the default nprobe suffices down to 3% (recall@10
# 0.988-0.999); text-like ones lose to the filter without more lists: 10% of the rows
# at nprobe 4: 0.672 (unfiltered: 0.694), at 8: 0.800; 5%: 0.647 and 0.805. 0.3 gives
# 8 lists at 10%, 5 at 50%. (Was 1.0: 400 lists at 1%, 0.22-0.34x the unfiltered q/s.)
NPROBE_EXPONENT = 0.3
# ...and enough lists to hold about this many matching rows (PROBED_MATCHES * nlist /
# matches lists). Recall@10 >= 0.95 took lists holding up to ~130 of them on 1M vectors
# (0.3%: 64 lists hold 94, 0.934; 128 hold 187, 0.976; 0.1%: 62 rows 0.910, 125 0.974),
# and more where lists are short: up to ~205 on 100k vectors in IVF1024,SQ8 (3%: 188
# rows 0.946, 375 0.991), ~260 on 60k in IVF1024,SQfp16 (10%: 188 rows 0.926, 375 0.976).
# Through the exponent alone, the lists needed hang on the default nprobe and the list
# size: 1M wants ~0.6, 100k ~1.1.
PROBED_MATCHES = 256


@dataclass(frozen=True)
class FilteredPlan:
    exact: bool  # scan the matching rows' vectors, not the index
    nprobe: int | None = None  # lists to visit (IVF); None: the index's default
    candidates: int | None = None  # re-ranked; None: the index's default


def plan_filtered(
    matches: int,
    live: int,
    nlist: int,
    nprobe: int,
    candidates: int | None = None,
) -> FilteredPlan:
    """`matches` rows pass the filter out of `live`; the index has `nlist` lists (0:
    exact) and would visit `nprobe` of them unfiltered (the request's or the default)."""
    if nlist == 0:
        return FilteredPlan(exact=matches <= EXACT_MAX_ROWS, candidates=candidates)
    if matches <= EXACT_MAX_ROWS:
        return FilteredPlan(exact=True)
    selectivity = matches / max(live, 1)
    # A list holds matches / nlist matching rows on average.
    boosted = math.ceil(max(nprobe / selectivity**NPROBE_EXPONENT,
                            PROBED_MATCHES * nlist / matches))  # fmt: skip
    return FilteredPlan(exact=False, nprobe=min(nlist, max(nprobe, boosted)),
                        candidates=candidates)  # fmt: skip
