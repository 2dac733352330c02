"""Planning an embedding run is pure: a table of cases."""

from __future__ import annotations

import pytest

from clipsearch.collection.ids import item_id
from clipsearch.collection.manifest import FileKind
from clipsearch.collection.shards import LiveItem
from clipsearch.indexer.embed.plan import IdCollisionError, plan_embedding
from clipsearch.indexer.embed.sources.base import FileLocator, SourceItem


def item(uri: str, stamp: str = "s1") -> SourceItem:
    return SourceItem(uri=uri, stamp=stamp, image=FileLocator(uri))


def live(uri: str, stamp: str = "s1", kind: FileKind = FileKind.EMBEDDINGS) -> LiveItem:
    return LiveItem(item_id(uri), uri, stamp, kind, seq=0)


@pytest.mark.parametrize(
    ("listing", "state", "pending", "counts"),
    [
        # (new, changed, unchanged, duplicates, deleted)
        ([item("a"), item("b")], [], ["a", "b"], (2, 0, 0, 0, 0)),
        ([item("a"), item("b")], [live("a")], ["b"], (1, 0, 1, 0, 0)),
        ([item("a", "s2")], [live("a", "s1")], ["a"], (0, 1, 0, 0, 0)),
        ([item("a")], [live("a"), live("gone")], [], (0, 0, 1, 0, 1)),
        ([item("a"), item("a")], [], ["a"], (1, 0, 0, 1, 0)),
        # a skipped input whose file did not change is not retried
        ([item("bad")], [live("bad", kind=FileKind.ERRORS)], [], (0, 0, 1, 0, 0)),
        ([], [live("a")], [], (0, 0, 0, 0, 1)),
    ],
)
def test_plan(
    listing: list[SourceItem],
    state: list[LiveItem],
    pending: list[str],
    counts: tuple[int, int, int, int, int],
) -> None:
    plan = plan_embedding(listing, {s.id: s for s in state})
    assert [p.item.uri for p in plan.pending] == pending
    assert all(p.id == item_id(p.item.uri) for p in plan.pending)
    assert (plan.new, plan.changed, plan.unchanged, plan.duplicates, len(plan.deleted)) == counts


def test_ids_are_stable_and_non_negative() -> None:
    assert item_id("/data/cat.jpg") == item_id("/data/cat.jpg")
    assert item_id("/data/cat.jpg") != item_id("/data/cat2.jpg")
    assert all(0 <= item_id(f"/img/{i}.jpg") < 2**63 for i in range(1000))


def test_id_collision_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("clipsearch.indexer.embed.plan.item_id", lambda uri: 7)
    with pytest.raises(IdCollisionError, match="share id 7"):
        plan_embedding([item("a"), item("b")], {})
