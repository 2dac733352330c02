"""PackedList: a read-only sequence stored as one pickled buffer."""

from __future__ import annotations

import pickle

import pytest

from clipsearch.indexer.embed.packed import PackedList
from clipsearch.indexer.embed.sources.base import FileLocator, SourceItem


def packed(n: int) -> PackedList[SourceItem]:
    items: PackedList[SourceItem] = PackedList()
    for i in range(n):
        items.append(SourceItem(f"/img/{i}.jpg", f"stamp{i}", FileLocator(f"/img/{i}.jpg")))
    items.freeze()
    return items


def test_reads_back_every_item_in_order() -> None:
    items = packed(100)
    assert len(items) == 100
    assert items[7].uri == "/img/7.jpg" and items[-1].stamp == "stamp99"
    assert [i.uri for i in items[10:13]] == ["/img/10.jpg", "/img/11.jpg", "/img/12.jpg"]
    assert [i.uri for i in items][50] == "/img/50.jpg"
    with pytest.raises(IndexError):
        items[100]


def test_is_two_arrays_when_pickled_and_survives_the_round_trip() -> None:
    items = packed(1000)
    state = items.__getstate__()
    assert set(state) == {"data", "offsets"}
    copy = pickle.loads(pickle.dumps(items))
    assert copy[999] == items[999]


def test_is_read_only_once_frozen() -> None:
    items = packed(2)
    with pytest.raises(RuntimeError, match="read-only"):
        items.append(items[0])


def test_empty() -> None:
    assert len(packed(0)) == 0 and list(packed(0)) == []
