"""A directory tree of images, with optional same-name .txt caption and .json metadata."""

from __future__ import annotations

import posixpath
from collections.abc import Iterator

from clipsearch.indexer.embed.sources.base import (
    FileLocator,
    SourceError,
    SourceItem,
    file_stamp,
    url_to_fs,
)

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tiff", ".tif"})


def list_directory(url: str) -> Iterator[SourceItem]:
    """Every image below `url`, in sorted order."""
    fs, root = url_to_fs(url)
    if not fs.isdir(root):
        raise SourceError(f"{url}: not a directory")
    files: dict[str, dict[str, object]] = fs.find(root, detail=True)
    protocol = fs.protocol if isinstance(fs.protocol, str) else fs.protocol[0]
    for path in sorted(files):
        stem, ext = posixpath.splitext(path)
        if ext.lower() not in IMAGE_EXTENSIONS:
            continue
        caption_info = files.get(stem + ".txt")
        metadata_info = files.get(stem + ".json")
        stamps = [file_stamp(files[path])]
        stamps += [file_stamp(i) if i else "-" for i in (caption_info, metadata_info)]
        yield SourceItem(
            uri=_unstrip(protocol, path),
            stamp="|".join(stamps),
            image=FileLocator(_unstrip(protocol, path)),
            caption=FileLocator(_unstrip(protocol, stem + ".txt")) if caption_info else None,
            metadata=FileLocator(_unstrip(protocol, stem + ".json")) if metadata_info else None,
        )


def _unstrip(protocol: str, path: str) -> str:
    """fsspec strips the protocol from paths; put it back so uris are openable URLs."""
    return path if protocol in {"file", "local"} else f"{protocol}://{path}"
