"""The build's fields.parquet: the fields filters test, one row per row of the version.

Derived from what the version already holds (its records and ids) plus when each row was
embedded, so a full build and `--add` write it the same way: the types are inferred over
every live row (field_types.py), then the rows are written in batches.
"""

from __future__ import annotations

import itertools
import logging
import math
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa

from clipsearch.collection.manifest import Manifest
from clipsearch.index.fields import (
    EMBEDDED_AT,
    FieldSchema,
    arrow_type,
    parse_date,
    write_fields,
)
from clipsearch.index.manifest import IDS_FILE, REMOVED
from clipsearch.index.records import Record, iter_records
from clipsearch.indexer.build.field_types import METADATA, SchemaInference, parse_metadata
from clipsearch.indexer.build.live_rows import LiveSet, embedded_at
from clipsearch.types import FieldInfo, FieldType

log = logging.getLogger(__name__)
BATCH_ROWS = 65_536  # rows per row group: bounds the memory of the Python values
WARNED_KEYS = 10  # unfilterable keys named in the log; the manifest lists them all


def build_fields(
    workdir: Path, shards: Manifest, live: LiveSet, batch_rows: int = BATCH_ROWS
) -> FieldSchema:
    """Infer the fields of the version in `workdir` (ids and records already written),
    write its fields.parquet, and return the schema for the manifest."""
    ids = np.load(workdir / IDS_FILE)
    live_rows = ids != REMOVED
    inference = SchemaInference()
    for row, record in enumerate(iter_records(workdir)):
        if live_rows[row]:
            inference.add(row, record.metadata)
    schema = inference.schema()
    _warn(schema)
    times = embedded_at(shards, live, ids)
    write_fields(workdir, _batches(workdir, live_rows, times, schema, batch_rows), schema)
    return schema


def _warn(schema: FieldSchema) -> None:
    names = list(schema.unfilterable)
    for name in names[:WARNED_KEYS]:
        log.warning("metadata key %s cannot be filtered: %s", name, schema.unfilterable[name])
    if len(names) > WARNED_KEYS:
        log.warning(
            "%d more metadata keys cannot be filtered: the manifest's `unfilterable` lists "
            "them with the reasons",
            len(names) - WARNED_KEYS,
        )


def _batches(
    workdir: Path, live: np.ndarray, times: np.ndarray, schema: FieldSchema, batch_rows: int
) -> Iterator[pa.RecordBatch]:
    wanted = {f.name: f for f in schema.fields}
    records = iter_records(workdir)
    for start in range(0, len(live), batch_rows):
        stop = min(start + batch_rows, len(live))
        columns: dict[str, list[object]] = {name: [None] * (stop - start) for name in wanted}
        for i, record in enumerate(itertools.islice(records, stop - start)):
            if live[start + i]:
                _fill_row(columns, wanted, i, record)
        arrays = [
            _times(times[start:stop]) if name == EMBEDDED_AT
            else pa.array(columns[name], type=arrow_type(info))
            for name, info in wanted.items()
        ]  # fmt: skip
        yield pa.RecordBatch.from_arrays(arrays, schema=schema.arrow_schema())


def _fill_row(
    columns: dict[str, list[object]], wanted: dict[str, FieldInfo], i: int, record: Record
) -> None:
    builtins: dict[str, object] = {
        "uri": record.uri,
        "caption": record.caption,
        "width": float(record.width),
        "height": float(record.height),
    }
    for name, value in builtins.items():
        columns[name][i] = value
    metadata = parse_metadata(record.metadata)
    if metadata is not None:
        for name, value in _flatten(METADATA, metadata):
            if name in wanted and value is not None:
                columns[name][i] = _cell(wanted[name], value)


def _flatten(prefix: str, value: dict[str, object]) -> Iterator[tuple[str, object]]:
    for key, item in value.items():
        path = f"{prefix}.{key}"
        yield path, item
        if isinstance(item, dict):
            yield from _flatten(path, item)


def _cell(info: FieldInfo, value: object) -> object:
    """A JSON value as its column stores it; the inference made sure the kind fits."""
    if info.list:
        assert isinstance(value, list)
        return [_scalar(info.type, item) for item in value if item is not None]
    return _scalar(info.type, value)


def _scalar(kind: FieldType, value: object) -> object:
    if kind is FieldType.NUMBER:
        assert isinstance(value, int | float)
        try:
            return float(value)
        except OverflowError:  # a JSON integer beyond float64's range
            return math.copysign(math.inf, value)
    if kind is FieldType.DATE:
        assert isinstance(value, str)
        return parse_date(value)
    return value


def _times(values: np.ndarray) -> pa.Array:
    """datetime64[us] (UTC) to the date column; NaT is null."""
    missing = np.isnat(values)
    micros = pa.array(values.astype(np.int64), mask=missing)
    return micros.cast(pa.timestamp("us", tz="UTC"))
