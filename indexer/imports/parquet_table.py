"""Parquet tables with an embedding column (a list of floats a row): the uri column is
guessed as `clipsearch embed` guesses a table's image column (or --uri-column), a
`text_embedding` column holds caption vectors, and every other column goes into
`metadata`."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from clipsearch.indexer.imports.base import (
    EMBEDDING_COLUMNS,
    TEXT_EMBEDDING_COLUMNS,
    URI_COLUMNS,
    ImportSourceError,
)
from clipsearch.indexer.imports.columns import is_vector_type, pick, table_file
from clipsearch.indexer.imports.parts import Part, files_stamp
from clipsearch.indexer.imports.vectors import ParquetVectors, VectorFile


def parquet_parts(
    files: list[Path], embedding_column: str | None, uri_column: str | None
) -> list[Part]:
    return [_part(path, embedding_column, uri_column) for path in files]


def _part(path: Path, embedding_column: str | None, uri_column: str | None) -> Part:
    label = str(path)
    try:
        schema = pq.read_schema(path)
    except (OSError, pa.ArrowInvalid) as err:
        raise ImportSourceError(f"{label}: not a readable Parquet file ({err})") from err
    vectors = [n for n in schema.names if is_vector_type(schema.field(n).type)]
    embedding = pick(vectors, embedding_column, EMBEDDING_COLUMNS)
    if embedding is None:
        named = embedding_column or f"one of {', '.join(EMBEDDING_COLUMNS)}"
        kinds = ", ".join(f"{f.name} ({f.type})" for f in schema)
        raise ImportSourceError(
            f"{label}: no embedding column ({named}, a list of floats); columns: {kinds}",
            hint="name the column of vectors with --embedding-column",
        )
    text_column = pick([v for v in vectors if v != embedding], None, TEXT_EMBEDDING_COLUMNS)
    text: VectorFile | None = None
    if text_column is not None:
        text = ParquetVectors(path, f"{label} ({text_column})", text_column)
    return Part(
        vectors=ParquetVectors(path, label, embedding),
        text_vectors=text,
        table=table_file(
            path, URI_COLUMNS, uri_column, uri_required=True, exclude=[embedding, *vectors]
        ),
        stamp=files_stamp([path]),
    )
