"""A metadata filter over a version's fields table, as a row mask: which rows it lets through.

Evaluated column-wise with pyarrow.compute. Every row that matches gets True, so a search
that keeps to the mask loses no matching row. The logic is SQL's (Kleene's): a condition
on a field a row lacks is unknown (null) there, `not` of unknown stays unknown, `all` and
`any` combine unknowns as Kleene's and/or do, and what is still unknown at the end does
not match. Two tests are about absence and never unknown: `none_of` passes rows without
the field, and `exists: false` passes exactly those. So `not(equals x)` leaves out the
rows without the field, and `none_of [x]` keeps them.

List fields: equals / any_of hold when the list holds one of the values, none_of when it
holds none of them, range and prefix when one of its values passes. An empty list is a
value (`exists` is true) that holds nothing.

Removed rows are never in a mask (whatever the filter): their fields are all null.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import reduce
from typing import TypeAlias

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from clipsearch.filters import Filter
from clipsearch.index.fields import FieldSchema, arrow_type, live_rows
from clipsearch.index.version import RowSet
from clipsearch.server.core.filter_check import (
    Checked,
    Every,
    InRange,
    Match,
    Negated,
    Present,
    Some,
    check,
)
from clipsearch.types import FieldInfo

Column: TypeAlias = pa.Array | pa.ChunkedArray  # what a compute function returns
ItemTest: TypeAlias = Callable[[Column], Column]  # a test of each value of a list field's items
MASK_CACHE_ENTRIES = 64
MASK_CACHE_BYTES = 256 << 20  # one byte per row per mask: 10M-row versions keep ~25


def row_mask(checked: Checked, table: pa.Table) -> np.ndarray:
    """Per row of `table`: does the checked filter let it through (bool, one per row)."""
    matched = pc.fill_null(_evaluate(checked, table), False)
    mask = np.asarray(matched.to_numpy(zero_copy_only=False), dtype=bool)
    live: np.ndarray = np.logical_and(mask, live_rows(table))
    return live


def _evaluate(checked: Checked, table: pa.Table) -> Column:
    if isinstance(checked, Every):
        return reduce(pc.and_kleene, (_evaluate(part, table) for part in checked.parts))
    if isinstance(checked, Some):
        return reduce(pc.or_kleene, (_evaluate(part, table) for part in checked.parts))
    if isinstance(checked, Negated):
        return pc.invert(_evaluate(checked.part, table))
    column = _column(table, checked.field)
    if isinstance(checked, Present):
        return pc.is_valid(column) if checked.present else pc.is_null(column)
    if isinstance(checked, Match):
        return _match(column, checked)
    if isinstance(checked, InRange):
        return _test(column, checked.field, lambda values: _in_range(values, checked))
    return _test(column, checked.field, lambda values: pc.starts_with(values, checked.text))


def _column(table: pa.Table, info: FieldInfo) -> pa.ChunkedArray:
    """The field's column; a version whose file disagrees with its manifest is damaged."""
    if info.name not in table.column_names:
        raise LookupError(f"fields.parquet has no column {info.name}, its manifest lists it")
    column = table.column(info.name)
    if column.type != arrow_type(info):
        raise LookupError(f"fields.parquet column {info.name} is {column.type}, not {info}")
    return column


def _match(column: pa.ChunkedArray, checked: Match) -> Column:
    wanted = pa.array(checked.values, type=arrow_type(_scalar_of(checked.field)))
    if checked.field.list:
        holds = _any_item(column, lambda values: pc.is_in(values, value_set=wanted))
        if checked.negate:  # none of them; a row without the list holds none
            return pc.invert(pc.fill_null(holds, False))
        return holds
    # is_in says false for a null; that is right for none_of only: for equals and any_of
    # a missing value is unknown, so that `not` of them leaves it out.
    found = pc.is_in(column, value_set=wanted)
    if checked.negate:
        return pc.invert(found)
    return pc.if_else(pc.is_valid(column), found, pa.scalar(None, pa.bool_()))


def _in_range(values: Column, checked: InRange) -> Column:
    tests = (
        pc.call_function(str(compare), [values, pa.scalar(bound, type=values.type)])
        for compare, bound in checked.bounds
    )
    return reduce(pc.and_kleene, tests)


def _test(column: pa.ChunkedArray, info: FieldInfo, test: ItemTest) -> Column:
    """A test of each value: of the column itself, or (list field) of one of its items."""
    return _any_item(column, test) if info.list else test(column)


def _any_item(column: pa.ChunkedArray, test: ItemTest) -> pa.Array:
    """Per row of a list column: does one of its items pass (null where there is no list).
    The items are tested all at once; their row numbers scatter the answers back."""
    items = pc.list_flatten(column)
    rows = pc.list_parent_indices(column)  # row number of each item, across chunks
    passed = pc.filter(rows, pc.fill_null(test(items), False))
    found = np.zeros(len(column), dtype=bool)
    found[np.asarray(passed.to_numpy(), dtype=np.int64)] = True
    missing = np.asarray(pc.is_null(column).to_numpy(zero_copy_only=False), dtype=bool)
    return pa.array(found, mask=missing)


def _scalar_of(info: FieldInfo) -> FieldInfo:
    return FieldInfo(info.name, info.type)


@dataclass
class _Entry:
    mask: np.ndarray
    rows: dict[str, RowSet] = field(default_factory=dict)  # by what they are rows of

    @property
    def nbytes(self) -> int:
        return self.mask.nbytes + sum(r.rows.nbytes + r.bits.nbytes for r in self.rows.values())


class FilterMasks:
    """Row masks by (version name, filter), with the RowSets searches make of them, the
    least recently used dropped first: a repeated filter costs neither its evaluation nor
    the RowSet (about 1 ms per query at 1M rows, more than a whole unfiltered search).

    Thread-safe: the lock guards only the map. Two threads missing the same filter at once
    both compute it, and either answer is right. Masks are read-only: callers share them.
    """

    def __init__(
        self, max_entries: int = MASK_CACHE_ENTRIES, max_bytes: int = MASK_CACHE_BYTES
    ) -> None:
        self._max_entries = max_entries
        self._max_bytes = max_bytes
        self._entries: OrderedDict[tuple[str, Filter], _Entry] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def mask(
        self,
        version: str,
        filter: Filter,
        table: pa.Table,
        schema: FieldSchema,
        path: str = "filter",
    ) -> np.ndarray:
        """The rows of `version` that `filter` lets through. Raises RequestError
        (INVALID_ARGUMENT) for a filter the version cannot answer."""
        return self._entry(version, filter, table, schema, path).mask

    def rows(
        self,
        version: str,
        filter: Filter,
        table: pa.Table,
        schema: FieldSchema,
        of: str,
        derive: Callable[[np.ndarray], RowSet],
        path: str = "filter",
    ) -> RowSet:
        """`derive(mask)`, cached with the mask under `of` (what the rows index: the
        images, the captions)."""
        entry = self._entry(version, filter, table, schema, path)
        found = entry.rows.get(of)
        if found is None:
            found = derive(entry.mask)
            with self._lock:
                if of not in entry.rows:
                    entry.rows[of] = found
                    self._bytes += found.rows.nbytes + found.bits.nbytes
                    self._evict()
        return found

    def _entry(
        self, version: str, filter: Filter, table: pa.Table, schema: FieldSchema, path: str
    ) -> _Entry:
        # Checked before the lookup, never cached: Equals(True) and Equals(1.0) are equal
        # keys in Python, and only the check tells which one the field's type accepts.
        checked = check(filter, schema, path)
        key = (version, filter)
        with self._lock:
            cached = self._entries.get(key)
            if cached is not None:
                self._entries.move_to_end(key)
                return cached
        mask = row_mask(checked, table)
        mask.flags.writeable = False
        with self._lock:
            if key not in self._entries:
                self._entries[key] = _Entry(mask)
                self._bytes += mask.nbytes
                self._evict()
            return self._entries[key]

    def _evict(self) -> None:
        while len(self._entries) > 1 and (
            len(self._entries) > self._max_entries or self._bytes > self._max_bytes
        ):
            _, dropped = self._entries.popitem(last=False)
            self._bytes -= dropped.nbytes

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)
