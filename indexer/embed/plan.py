"""Pure planning of an embedding run: what is new, changed, unchanged and deleted."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from clipsearch.collection.ids import item_id
from clipsearch.collection.shards import LiveItem
from clipsearch.errors import ClipsearchError
from clipsearch.indexer.embed.packed import PackedList
from clipsearch.indexer.embed.sources import SourceItem


class IdCollisionError(ClipsearchError):
    """Two different uris hash to the same id (about 1 in 10^10 for a million items)."""


@dataclass(frozen=True)
class PlannedItem:
    id: int
    item: SourceItem


@dataclass(frozen=True)
class EmbedPlan:
    pending: PackedList[PlannedItem]  # new or changed, in source order
    new: int
    changed: int
    unchanged: int
    duplicates: int  # uris listed more than once in the source (kept once)
    deleted: list[LiveItem]  # in the collection, gone from the source


def plan_embedding(listing: Iterable[SourceItem], state: Mapping[int, LiveItem]) -> EmbedPlan:
    """Compare the source with the collection's state; nothing here touches files."""
    seen: dict[int, str] = {}
    pending: PackedList[PlannedItem] = PackedList()
    new = changed = unchanged = duplicates = 0
    for item in listing:
        key = item_id(item.uri)
        if key in seen:
            if seen[key] != item.uri:
                raise IdCollisionError(f"{seen[key]} and {item.uri} share id {key}")
            duplicates += 1
            continue
        seen[key] = item.uri
        live = state.get(key)
        if live is not None and live.stamp == item.stamp:
            unchanged += 1
            continue
        if live is None:
            new += 1
        else:
            changed += 1
        pending.append(PlannedItem(key, item))
    deleted = [live for key, live in state.items() if key not in seen]
    pending.freeze()
    return EmbedPlan(pending, new, changed, unchanged, duplicates, deleted)
