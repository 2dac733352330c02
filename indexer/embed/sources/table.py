"""A Parquet or CSV table of images: a column of paths/URLs, or of image bytes (img2dataset).

Every other column is carried through, as JSON, into the `metadata` of each row.
"""

from __future__ import annotations

import hashlib
import json
import posixpath
from collections.abc import Iterator
from datetime import date, datetime

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from clipsearch.indexer.embed.sources.base import (
    FileLocator,
    ParquetCellLocator,
    SourceError,
    SourceItem,
    file_stamp,
    url_to_fs,
)

PATH_COLUMNS = ("image_path", "path", "filepath", "file", "uri", "url")
BYTES_COLUMNS = ("jpg", "png", "webp", "image", "image_bytes", "bytes")
CAPTION_COLUMNS = ("caption", "text", "title")


def list_table(url: str, path_column: str | None, image_column: str | None) -> Iterator[SourceItem]:
    fs, path = url_to_fs(url)
    if path.lower().endswith(".csv"):
        with fs.open(path, "rb") as handle:
            table = pacsv.read_csv(handle)
        yield from _path_rows(url, table, _pick(table.schema, path_column, PATH_COLUMNS, "path"))
        return
    with fs.open(path, "rb") as handle:
        parquet = pq.ParquetFile(handle)
        schema = parquet.schema_arrow
        image = image_column or _first_bytes_column(schema)
        if image is None:
            table = parquet.read()
            column = _pick(schema, path_column, PATH_COLUMNS, "path")
            yield from _path_rows(url, table, column)
            return
        if image not in schema.names:
            raise SourceError(f"{url}: no column {image!r}; columns: {', '.join(schema.names)}")
        stamp = file_stamp(fs.info(path))
        others = [name for name in schema.names if name != image]
        for group in range(parquet.num_row_groups):
            rows = parquet.read_row_group(group, columns=others).to_pylist()
            for index, row in enumerate(rows):
                key = row.get("key", f"{group}-{index}")
                yield _item(
                    uri=f"{url}#{key}",
                    stamp=stamp,
                    image=ParquetCellLocator(url, image, group, index),
                    row=row,
                )


def _path_rows(url: str, table: pa.Table, column: str) -> Iterator[SourceItem]:
    folder = posixpath.dirname(url)
    for row in table.to_pylist():
        value = row.pop(column)
        if not value:
            continue
        # Relative paths are relative to the table's own folder, wherever the job runs.
        target = str(value) if "://" in str(value) else posixpath.join(folder, str(value))
        target_fs, target_path = url_to_fs(target)
        try:
            stamp = file_stamp(target_fs.info(target_path))
        except FileNotFoundError:
            stamp = "missing"  # embedding it records the error; a later copy re-embeds
        yield _item(uri=target, stamp=stamp, image=FileLocator(target), row=row)


def _item(
    uri: str, stamp: str, image: FileLocator | ParquetCellLocator, row: dict[str, object]
) -> SourceItem:
    caption = next((row.pop(c) for c in CAPTION_COLUMNS if c in row), None)
    metadata = json.dumps(row, default=_json_default, sort_keys=True) if row else None
    text = None if caption is None else str(caption)
    return SourceItem(
        uri=uri,
        stamp=f"{stamp}|{hash_row(text, metadata)}",
        image=image,
        caption=text,
        metadata=metadata,
    )


def hash_row(caption: str | None, metadata: str | None) -> str:
    """Captions and metadata live in the table: a change to them must show in the stamp."""
    text = f"{caption}\x00{metadata}".encode()
    return hashlib.blake2b(text, digest_size=8).hexdigest()


def _pick(schema: pa.Schema, requested: str | None, candidates: tuple[str, ...], what: str) -> str:
    if requested:
        if requested not in schema.names:
            raise SourceError(f"no column {requested!r}; columns: {', '.join(schema.names)}")
        return requested
    for name in candidates:
        if name in schema.names:
            return name
    raise SourceError(
        f"cannot tell which column holds the image {what}s (looked for {', '.join(candidates)}); "
        f"columns: {', '.join(schema.names)}. Pass --path-column or --image-column."
    )


def _first_bytes_column(schema: pa.Schema) -> str | None:
    for name in BYTES_COLUMNS:
        kind = schema.field(name).type if name in schema.names else None
        if kind is not None and (pa.types.is_binary(kind) or pa.types.is_large_binary(kind)):
            return name
    return None


def _json_default(value: object) -> str:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, bytes):
        return f"<{len(value)} bytes>"
    return str(value)
