"""What a source is (clip-retrieval output, .npy files or Parquet tables), and its parts."""

from __future__ import annotations

import glob
from pathlib import Path

from clipsearch.indexer.imports.base import ImportSource, ImportSourceError, SourceKind
from clipsearch.indexer.imports.clip_retrieval import clip_retrieval_parts, is_clip_retrieval
from clipsearch.indexer.imports.npy_folder import npy_parts
from clipsearch.indexer.imports.parquet_table import parquet_parts
from clipsearch.indexer.imports.parts import Part

_SUFFIX = {SourceKind.NPY: ".npy", SourceKind.PARQUET: ".parquet"}


def list_parts(source: ImportSource) -> tuple[SourceKind, list[Part]]:
    """The source's kind and its parts, in a fixed order; nothing is read but headers,
    schemas and (for the uris) tables."""
    kind, files = _files(source)
    if source.embedding_column and kind is not SourceKind.PARQUET:
        raise ImportSourceError(
            f"--embedding-column applies to Parquet sources; {source.path} is {kind.value}"
        )
    if kind is SourceKind.CLIP_RETRIEVAL:
        return kind, clip_retrieval_parts(Path(source.path), source.uri_column)
    if kind is SourceKind.NPY:
        return kind, npy_parts(files, source.uri_column)
    return kind, parquet_parts(files, source.embedding_column, source.uri_column)


def _files(source: ImportSource) -> tuple[SourceKind, list[Path]]:
    """The kind, and for .npy and Parquet sources their files in name order."""
    text = source.path
    if any(ch in text for ch in "*?["):
        matches = [Path(p) for p in sorted(glob.glob(text)) if Path(p).is_file()]
        if not matches:
            raise ImportSourceError(f"{text}: the pattern matches no files")
        return _kind_of_files(source, matches), matches
    path = Path(text)
    if not path.exists():
        raise ImportSourceError(f"{text}: no such file or directory")
    if path.is_file():
        return _kind_of_files(source, [path]), [path]
    wanted = source.kind
    if wanted in (SourceKind.AUTO, SourceKind.CLIP_RETRIEVAL) and is_clip_retrieval(path):
        return SourceKind.CLIP_RETRIEVAL, []
    if wanted is SourceKind.CLIP_RETRIEVAL:
        return SourceKind.CLIP_RETRIEVAL, []  # its own listing says what is missing
    for kind in (SourceKind.NPY, SourceKind.PARQUET):
        found = sorted(p for p in path.glob("*" + _SUFFIX[kind]) if p.is_file())
        if found and wanted in (SourceKind.AUTO, kind):
            return kind, found
    if wanted is not SourceKind.AUTO:
        raise ImportSourceError(f"{text}: a folder with no {_SUFFIX[wanted]} files in it")
    raise ImportSourceError(
        f"{text}: found no embeddings in this folder",
        hint="import reads clip-retrieval output (a folder with img_emb/), a folder of .npy "
        "files, or Parquet tables with an embedding column",
    )


def _kind_of_files(source: ImportSource, files: list[Path]) -> SourceKind:
    if source.kind is SourceKind.CLIP_RETRIEVAL:
        raise ImportSourceError(
            f"{source.path}: clip-retrieval output is a folder (img_emb/, metadata/)"
        )
    if source.kind is not SourceKind.AUTO:
        return source.kind
    suffixes = {p.suffix.lower() for p in files}
    for kind in (SourceKind.NPY, SourceKind.PARQUET):
        if suffixes == {_SUFFIX[kind]}:
            return kind
    raise ImportSourceError(
        f"{source.path}: expected .npy or .parquet files (found {', '.join(sorted(suffixes))})",
        hint="--source-format says what they are when the names do not",
    )
