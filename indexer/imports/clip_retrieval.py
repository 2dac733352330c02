"""`clip-retrieval inference` output: img_emb/img_emb_N.npy, text_emb/text_emb_N.npy and
metadata/metadata_N.parquet, row r of each file the same sample.

The uri is the metadata's `url` where it has one (webdataset input with metadata: its
`image_path` is only the sample's key), else its `image_path` (the image file). `caption`
is the caption; every other column goes into `metadata`.
"""

from __future__ import annotations

import re
from pathlib import Path

from clipsearch.indexer.imports.base import ImportSourceError
from clipsearch.indexer.imports.columns import table_file
from clipsearch.indexer.imports.parts import Part, files_stamp
from clipsearch.indexer.imports.vectors import NpyVectors, VectorFile

IMAGE_FOLDER = "img_emb"
URI_COLUMNS = ("url", "image_path")


def is_clip_retrieval(folder: Path) -> bool:
    return bool(_numbered(folder / IMAGE_FOLDER, "img_emb_", ".npy"))


def clip_retrieval_parts(folder: Path, uri_column: str | None) -> list[Part]:
    images = _numbered(folder / IMAGE_FOLDER, "img_emb_", ".npy")
    if not images:
        raise ImportSourceError(
            f"{folder}: no {IMAGE_FOLDER}/img_emb_N.npy files, so not clip-retrieval output",
            hint="point at the --output_folder of `clip-retrieval inference` (image "
            "embeddings enabled)",
        )
    texts = _numbered(folder / "text_emb", "text_emb_", ".npy")
    tables = _numbered(folder / "metadata", "metadata_", ".parquet")
    parts = []
    for number, path in sorted(images.items()):
        table_path = tables.get(number)
        if table_path is None:
            raise ImportSourceError(
                f"{path} has no metadata/metadata_{number}.parquet: its uris and captions "
                "are there",
                hint="copy the whole clip-retrieval output folder (a partition without its "
                "metadata was not finished)",
            )
        text: VectorFile | None = None
        files = [path, table_path]
        if number in texts:
            text = NpyVectors(texts[number], str(texts[number]))
            files.append(texts[number])
        parts.append(
            Part(
                vectors=NpyVectors(path, str(path)),
                text_vectors=text,
                table=table_file(table_path, URI_COLUMNS, uri_column, uri_required=True),
                stamp=files_stamp(files),
            )
        )
    return parts


def _numbered(folder: Path, prefix: str, suffix: str) -> dict[int, Path]:
    """Files PREFIX<number>SUFFIX by number (clip-retrieval pads numbers with zeros)."""
    pattern = re.compile(re.escape(prefix) + r"(\d+)" + re.escape(suffix) + "$")
    found = {}
    if folder.is_dir():
        for path in folder.iterdir():
            if match := pattern.match(path.name):
                found[int(match.group(1))] = path
    return found
