"""The fields of an index version that filters test: `fields.parquet`, one row per index row.

Row r of fields.parquet is row r of ids.npy, vectors.npy and the records, removed rows
included. Its columns are named as filters name fields:

- the built-ins: `uri` and `caption` (string), `width` and `height` (number), and
  `embedded_at` (date: when the run that embedded the row's shard started);
- `metadata.KEY` for each filterable metadata key, nested objects by dotted path
  (`metadata.camera.model`), lists of scalars as list fields.

A field's type (`clipsearch.types.FieldType`) fixes its Arrow type: string → string,
number → float64, bool → bool, date → timestamp("us", "UTC"), and a list field holds a
list of that. A missing or null value is null. A removed row is null in every column, and
`uri` is never null on a live row, so `live_rows` can tell them apart.

The manifest lists the fields (`IndexManifest.fields`) and the metadata keys that could not
be typed (`IndexManifest.unfilterable`, key → why). Versions built before filters have
neither the file nor the lists: they read as a table without columns.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from clipsearch.index.manifest import FIELDS_FILE, IndexManifest
from clipsearch.types import FieldInfo, FieldType

METADATA_PREFIX = "metadata."
URI = "uri"
EMBEDDED_AT = "embedded_at"
BUILTIN_FIELDS = (
    FieldInfo(URI, FieldType.STRING),
    FieldInfo("caption", FieldType.STRING),
    FieldInfo("width", FieldType.NUMBER),
    FieldInfo("height", FieldType.NUMBER),
    FieldInfo(EMBEDDED_AT, FieldType.DATE),
)

_ARROW_TYPES = {
    FieldType.STRING: pa.string(),
    FieldType.NUMBER: pa.float64(),
    FieldType.BOOL: pa.bool_(),
    FieldType.DATE: pa.timestamp("us", tz="UTC"),
}

# The one date rule, for stored values and filter values alike: ISO 8601 in its extended
# form, a date with an optional time and offset. Compact forms ("20230601") are left out
# on purpose: they would turn codes that happen to be eight digits into dates.
_DATE = re.compile(
    r"\d{4}-\d{2}-\d{2}"
    r"(?:[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d{1,6})?)?(?:Z|[+-]\d{2}:?\d{2})?)?"
)


@dataclass(frozen=True)
class FieldSchema:
    """What filters can test in a version, and the metadata keys they cannot (key → why)."""

    fields: tuple[FieldInfo, ...]
    unfilterable: dict[str, str] = field(default_factory=dict)

    @staticmethod
    def of(manifest: IndexManifest) -> FieldSchema:
        return FieldSchema(tuple(manifest.fields), dict(manifest.unfilterable))

    def get(self, name: str) -> FieldInfo | None:
        return next((f for f in self.fields if f.name == name), None)

    def arrow_schema(self) -> pa.Schema:
        return pa.schema([(f.name, arrow_type(f)) for f in self.fields])


def arrow_type(info: FieldInfo) -> pa.DataType:
    scalar = _ARROW_TYPES[info.type]
    return pa.list_(scalar) if info.list else scalar


def parse_date(text: str) -> datetime | None:
    """An ISO 8601 date or time as an aware UTC datetime, or None when `text` is not one.
    A date alone is midnight UTC; a time without an offset is taken as UTC."""
    if not _DATE.fullmatch(text):
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:  # matches the shape but is no real moment: 2023-02-30, 25:00
        return None
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def write_fields(folder: Path, batches: Iterable[pa.RecordBatch], schema: FieldSchema) -> None:
    """Write fields.parquet from row batches in row order (one row group per batch)."""
    with pq.ParquetWriter(folder / FIELDS_FILE, schema.arrow_schema(), compression="zstd") as out:
        for batch in batches:
            out.write_batch(batch)


def read_fields(
    version: Path, columns: Sequence[str] | None = None, rows: int | None = None
) -> pa.Table:
    """A version's fields table (only `columns`, if given), read through a memory map.
    A version built before filters has no file: its table has no columns. With `rows`,
    a file of another length is refused (ValueError), as a damaged version would be."""
    path = version / FIELDS_FILE
    if not path.exists():
        return pa.table({})
    table = pq.read_table(path, columns=list(columns) if columns else None, memory_map=True)
    if rows is not None and table.num_rows != rows:
        raise ValueError(f"{FIELDS_FILE} holds {table.num_rows} rows, expected {rows}")
    return table


def live_rows(table: pa.Table) -> np.ndarray:
    """Per row: is it a live row (not removed). All true for a table without columns."""
    if URI not in table.column_names:
        return np.ones(table.num_rows, dtype=bool)
    valid: np.ndarray = pc.is_valid(table.column(URI)).to_numpy(zero_copy_only=False)
    return valid
