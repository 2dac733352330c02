"""`.npy` matrices as autofaiss reads them: files in name order, one vector a row.

A vector's uri is `/absolute/path/FILE.npy#ROW`, unless FILE.parquet lies beside FILE.npy:
then its rows give the uris (a uri column, guessed or --uri-column), captions and
metadata, row r for vector r; a sidecar without a uri column keeps the synthesized uris.
"""

from __future__ import annotations

from pathlib import Path

from clipsearch.indexer.imports.base import URI_COLUMNS, ImportSourceError
from clipsearch.indexer.imports.columns import table_file
from clipsearch.indexer.imports.parts import Part, TableFile, files_stamp
from clipsearch.indexer.imports.vectors import NpyVectors


def npy_parts(files: list[Path], uri_column: str | None) -> list[Part]:
    parts = []
    for path in files:
        sidecar = path.with_suffix(".parquet")
        table: TableFile | None = None
        if sidecar.is_file():
            table = table_file(sidecar, URI_COLUMNS, uri_column, uri_required=False)
        elif uri_column:
            raise ImportSourceError(
                f"--uri-column {uri_column}: {path} has no {sidecar.name} beside it to take "
                "uris from",
                hint="without a table, a vector's uri is FILE.npy#ROW: leave out --uri-column",
            )
        files = [path, sidecar] if table else [path]
        parts.append(Part(NpyVectors(path, str(path)), None, table, files_stamp(files)))
    return parts
