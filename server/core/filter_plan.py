"""Planning a filtered search, so that no filter costs recall: pure arithmetic from how
many rows the filter lets through.

- Few rows match: an exact scan of just their stored vectors. It is exact, and cheaper
  than any index search once it is short.
- Many match: the index, with an ID selector that skips the other rows as lists are
  scanned, and more lists visited the fewer rows match, so that about as many allowed
  candidates reach re-ranking as an unfiltered search gets.
- An exact (Flat) index is scanned whole either way: its selector search is exact.

The constants come from `make bench-filter` (1M CLIP-like vectors, IVF2048 fast-scan PQ,
one thread): see the README's benchmark figures.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

# Below this many matching rows the exact scan of their vectors is as fast as the index.
EXACT_MAX_ROWS = 4_096
# The index visits nprobe / selectivity**NPROBE_EXPONENT lists (capped at nlist).
NPROBE_EXPONENT = 1.0


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
    boosted = math.ceil(nprobe / selectivity**NPROBE_EXPONENT)
    return FilteredPlan(exact=False, nprobe=min(nlist, max(nprobe, boosted)),
                        candidates=candidates)  # fmt: skip
