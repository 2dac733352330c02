"""Image collections clipsearch can embed, each listed as a stream of SourceItems."""

from __future__ import annotations

import posixpath
from collections.abc import Iterator
from dataclasses import dataclass
from enum import StrEnum

from clipsearch.indexer.embed.sources.base import (
    Reader,
    SourceError,
    SourceItem,
    read_text,
    url_to_fs,
)
from clipsearch.indexer.embed.sources.directory import list_directory
from clipsearch.indexer.embed.sources.table import list_table
from clipsearch.indexer.embed.sources.webdataset import list_tars


class SourceFormat(StrEnum):
    AUTO = "auto"
    IMAGES = "images"
    TABLE = "table"
    WEBDATASET = "webdataset"


@dataclass(frozen=True)
class SourceSpec:
    """`clipsearch embed SOURCE --source-format ... --path-column ... --image-column ...`"""

    url: str
    format: SourceFormat = SourceFormat.AUTO
    path_column: str | None = None
    image_column: str | None = None


def list_source(spec: SourceSpec) -> Iterator[SourceItem]:
    """Every item of the source, in a deterministic order."""
    kind, members = detect_format(spec)
    if kind is SourceFormat.WEBDATASET:
        return list_tars(members)
    if kind is SourceFormat.TABLE:
        return _chain(list_table(m, spec.path_column, spec.image_column) for m in members)
    return list_directory(spec.url)


def detect_format(spec: SourceSpec) -> tuple[SourceFormat, list[str]]:
    """What the source is, and the files it consists of (tar or table files)."""
    fs, path = url_to_fs(spec.url)
    protocol = fs.protocol if isinstance(fs.protocol, str) else fs.protocol[0]
    local = protocol in {"file", "local"}

    def url(p: str) -> str:
        return p if local else f"{protocol}://{p}"

    if any(ch in path for ch in "*?["):
        matches = sorted(fs.glob(path))
        if not matches:
            raise SourceError(f"{spec.url}: the pattern matches no files")
        return _format_of_files(spec, [url(m) for m in matches])
    if not fs.exists(path):
        raise SourceError(f"{spec.url}: no such file or directory")
    if not fs.isdir(path):
        return _format_of_files(spec, [spec.url])
    if spec.format is SourceFormat.IMAGES:
        return SourceFormat.IMAGES, []
    for ext, kind in ((".tar", SourceFormat.WEBDATASET), (".parquet", SourceFormat.TABLE)):
        found = sorted(fs.glob(posixpath.join(path, "*" + ext)))
        if found and spec.format in (SourceFormat.AUTO, kind):
            return kind, [url(m) for m in found]
    if spec.format not in (SourceFormat.AUTO, SourceFormat.IMAGES):
        raise SourceError(f"{spec.url}: a directory with no {spec.format.value} files in it")
    return SourceFormat.IMAGES, []


def _format_of_files(spec: SourceSpec, files: list[str]) -> tuple[SourceFormat, list[str]]:
    if spec.format not in (SourceFormat.AUTO, SourceFormat.IMAGES):
        return spec.format, files
    suffixes = {posixpath.splitext(f)[1].lower() for f in files}
    if suffixes == {".tar"}:
        return SourceFormat.WEBDATASET, files
    if suffixes <= {".parquet", ".csv"}:
        return SourceFormat.TABLE, files
    raise SourceError(
        f"{spec.url}: expected a directory of images, .tar shards, or a .parquet/.csv table "
        f"(found {', '.join(sorted(suffixes))}); --source-format says which"
    )


def _chain(parts: Iterator[Iterator[SourceItem]]) -> Iterator[SourceItem]:
    for part in parts:
        yield from part


__all__ = [
    "Reader",
    "SourceError",
    "SourceFormat",
    "SourceItem",
    "SourceSpec",
    "detect_format",
    "list_source",
    "read_text",
]
