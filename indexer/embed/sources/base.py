"""What a source yields: items with a stable uri, a change stamp, and a way to read bytes."""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import IO, Protocol

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq
from fsspec import AbstractFileSystem

from clipsearch.errors import ClipsearchError


class SourceError(ClipsearchError):
    """The source cannot be listed: missing, unreadable, or not in a format clipsearch reads."""


class Reader:
    """Per-worker cache of open files and Parquet row groups; items are read in order."""

    def __init__(self, max_open: int = 8) -> None:
        self._files: OrderedDict[str, IO[bytes]] = OrderedDict()
        self._row_group: tuple[str, int, pa.Table] | None = None
        self._max_open = max_open

    def file(self, url: str) -> IO[bytes]:
        handle = self._files.pop(url, None)
        if handle is None:
            fs, path = url_to_fs(url)
            handle = fs.open(path, "rb")
            if len(self._files) >= self._max_open:
                _, oldest = self._files.popitem(last=False)
                oldest.close()
        self._files[url] = handle
        return handle

    def row_group(self, url: str, index: int) -> pa.Table:
        if self._row_group is None or self._row_group[:2] != (url, index):
            table = pq.ParquetFile(self.file(url)).read_row_group(index)
            self._row_group = (url, index, table)
        return self._row_group[2]

    def close(self) -> None:
        for handle in self._files.values():
            handle.close()
        self._files.clear()
        self._row_group = None


class Locator(Protocol):
    """Where an item's bytes are; read in a worker, never at listing time."""

    def read(self, reader: Reader) -> bytes: ...


@dataclass(frozen=True, slots=True)
class FileLocator:
    url: str

    def read(self, reader: Reader) -> bytes:
        fs, path = url_to_fs(self.url)
        with fs.open(path, "rb") as handle:
            data: bytes = handle.read()
        return data


@dataclass(frozen=True, slots=True)
class ByteRangeLocator:
    """A member of an uncompressed tar file: its data's offset and size."""

    url: str
    offset: int
    size: int

    def read(self, reader: Reader) -> bytes:
        handle = reader.file(self.url)
        handle.seek(self.offset)
        return handle.read(self.size)


@dataclass(frozen=True, slots=True)
class ParquetCellLocator:
    url: str
    column: str
    row_group: int
    row: int

    def read(self, reader: Reader) -> bytes:
        value = reader.row_group(self.url, self.row_group).column(self.column)[self.row].as_py()
        return value if isinstance(value, bytes) else b""


Text = str | Locator | None


@dataclass(frozen=True, slots=True)
class SourceItem:
    """One image of a collection. `stamp` changes whenever the image or its sidecars change."""

    uri: str
    stamp: str
    image: Locator
    caption: Text = None
    metadata: Text = None


def read_text(value: Text, reader: Reader) -> str | None:
    if value is None or isinstance(value, str):
        return value
    return value.read(reader).decode("utf-8", errors="replace")


def url_to_fs(url: str) -> tuple[AbstractFileSystem, str]:
    """fsspec filesystem and path for a local path or URL (s3://, gs://, ... need their package)."""
    try:
        fs, path = fsspec.core.url_to_fs(url)
    except (ImportError, ValueError) as err:
        raise SourceError(f"{url}: cannot open this kind of URL ({err})") from err
    return fs, path


def file_stamp(info: dict[str, object]) -> str:
    """Size plus modification time (or ETag on object stores)."""
    changed = info.get("mtime") or info.get("LastModified") or info.get("ETag") or ""
    return f"{info.get('size', '')}@{changed}"
