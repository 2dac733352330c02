"""WebDataset tar shards as img2dataset writes them: key.jpg + key.txt + key.json."""

from __future__ import annotations

import posixpath
import tarfile
from collections.abc import Iterator

from clipsearch.indexer.embed.sources.base import (
    ByteRangeLocator,
    SourceError,
    SourceItem,
    file_stamp,
    url_to_fs,
)
from clipsearch.indexer.embed.sources.directory import IMAGE_EXTENSIONS


def list_tars(urls: list[str]) -> Iterator[SourceItem]:
    for url in urls:
        yield from _list_tar(url)


def _list_tar(url: str) -> Iterator[SourceItem]:
    fs, path = url_to_fs(url)
    stamp = file_stamp(fs.info(path))
    members: dict[str, dict[str, tarfile.TarInfo]] = {}
    try:
        with fs.open(path, "rb") as handle, tarfile.open(fileobj=handle, mode="r:") as tar:
            for member in tar:
                if member.isfile():
                    key, ext = posixpath.splitext(member.name)
                    members.setdefault(key, {})[ext.lower()] = member
    except tarfile.TarError as err:
        raise SourceError(f"{url}: not a readable uncompressed tar file ({err})") from err
    for key in sorted(members):
        parts = members[key]
        image = next((parts[e] for e in sorted(parts) if e in IMAGE_EXTENSIONS), None)
        if image is None:
            continue
        caption, metadata = parts.get(".txt"), parts.get(".json")
        yield SourceItem(
            uri=f"{url}#{image.name}",
            stamp=stamp,
            image=_locate(url, image),
            caption=_locate(url, caption) if caption else None,
            metadata=_locate(url, metadata) if metadata else None,
        )


def _locate(url: str, member: tarfile.TarInfo) -> ByteRangeLocator:
    return ByteRangeLocator(url, member.offset_data, member.size)
