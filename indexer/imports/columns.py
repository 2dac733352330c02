"""Which columns of a table hold what: named by a flag, else guessed from common names."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from clipsearch.indexer.imports.base import CAPTION_COLUMNS, ImportSourceError
from clipsearch.indexer.imports.parts import TableFile


def pick(names: Sequence[str], requested: str | None, candidates: Sequence[str]) -> str | None:
    """The requested column, else the first candidate present, else None."""
    if requested:
        return requested if requested in names else None
    return next((c for c in candidates if c in names), None)


def is_vector_type(kind: pa.DataType) -> bool:
    lists = pa.types.is_list(kind) or pa.types.is_large_list(kind)
    if not (lists or pa.types.is_fixed_size_list(kind)):
        return False
    return bool(pa.types.is_floating(kind.value_type))


def table_file(
    path: Path,
    uri_candidates: Sequence[str],
    uri_column: str | None,
    uri_required: bool,
    exclude: Sequence[str] = (),
) -> TableFile:
    """A part's table: its uri column (refused when required and missing), its caption
    column, and every other column as metadata."""
    label = str(path)
    try:
        schema = pq.read_schema(path)
    except (OSError, pa.ArrowInvalid) as err:
        raise ImportSourceError(f"{label}: not a readable Parquet file ({err})") from err
    names = [n for n in schema.names if n not in exclude]
    uri = pick(names, uri_column, uri_candidates)
    if uri is None and (uri_required or uri_column):
        wanted = f"no column {uri_column!r}" if uri_column else (
            f"no uri column (looked for {', '.join(uri_candidates)})"
        )  # fmt: skip
        raise ImportSourceError(
            f"{label}: {wanted}; columns: {', '.join(schema.names)}",
            hint="name the column of image paths or URLs with --uri-column",
        )
    caption = pick(names, None, CAPTION_COLUMNS)
    used = {uri, caption}
    sized = all(
        n in names and pa.types.is_integer(schema.field(n).type) for n in ("width", "height")
    )
    return TableFile(
        path=path,
        label=label,
        uri_column=uri,
        caption_column=caption,
        metadata_columns=tuple(n for n in names if n not in used),
        sized=sized,
    )
