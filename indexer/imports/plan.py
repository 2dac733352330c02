"""Pure planning of an import: which rows are new, changed, unchanged or gone.

A row's stamp is its part's stamp (the sizes and modification times of the part's files)
and its row number: a rerun over unchanged files imports nothing, a rewritten file is
imported again, and a run stopped midway resumes where its last shard ended.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np

from clipsearch.collection.ids import item_id
from clipsearch.collection.shards import LiveItem
from clipsearch.errors import ClipsearchError


class IdCollisionError(ClipsearchError):
    """Two different uris hash to the same id (about 1 in 10^10 for a million items)."""


@dataclass(frozen=True)
class PartListing:
    stamp: str
    uris: list[str]


@dataclass(frozen=True)
class PartPlan:
    rows: np.ndarray  # int64 row numbers to import, ascending
    ids: np.ndarray  # int64 ids of those rows


@dataclass(frozen=True)
class ImportPlan:
    parts: list[PartPlan]  # one per part of the source, in its order
    new: int
    changed: int
    unchanged: int
    duplicates: int  # rows whose uri an earlier row already has (the first one is kept)
    deleted: list[LiveItem]  # in the collection, gone from the source

    @property
    def pending(self) -> int:
        return self.new + self.changed


def row_stamp(part_stamp: str, row: int) -> str:
    return f"{part_stamp}#{row}"


def plan_import(listings: Iterable[PartListing], state: Mapping[int, LiveItem]) -> ImportPlan:
    seen: dict[int, str] = {}
    parts = []
    new = changed = unchanged = duplicates = 0
    for listing in listings:
        rows: list[int] = []
        ids: list[int] = []
        for row, uri in enumerate(listing.uris):
            key = item_id(uri)
            if key in seen:
                if seen[key] != uri:
                    raise IdCollisionError(f"{seen[key]} and {uri} share id {key}")
                duplicates += 1
                continue
            seen[key] = uri
            live = state.get(key)
            if live is not None and live.stamp == row_stamp(listing.stamp, row):
                unchanged += 1
                continue
            if live is None:
                new += 1
            else:
                changed += 1
            rows.append(row)
            ids.append(key)
        parts.append(PartPlan(np.asarray(rows, dtype=np.int64), np.asarray(ids, dtype=np.int64)))
    deleted = [live for key, live in state.items() if key not in seen]
    return ImportPlan(parts, new, changed, unchanged, duplicates, deleted)
