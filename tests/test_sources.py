"""Listing every kind of source, and reading items back the way workers do."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from clipsearch.indexer.embed.sources import (
    Reader,
    SourceError,
    SourceFormat,
    SourceSpec,
    detect_format,
    list_source,
    read_text,
)


def listed(url: str, **kwargs: object) -> list:  # type: ignore[type-arg]
    return list(list_source(SourceSpec(url, **kwargs)))  # type: ignore[arg-type]


def test_directory_recurses_pairs_sidecars_and_ignores_other_files(
    tmp_path: Path, textile_paths: list[Path]
) -> None:
    (tmp_path / "a" / "b").mkdir(parents=True)
    (tmp_path / "a" / "b" / "x.JPG").write_bytes(textile_paths[0].read_bytes())
    (tmp_path / "a" / "b" / "x.txt").write_text("a caption\n")
    (tmp_path / "a" / "b" / "x.json").write_text('{"label": "nominal"}')
    (tmp_path / "y.webp").write_bytes(b"whatever")
    (tmp_path / "notes.md").write_text("not an image")

    items = listed(str(tmp_path))
    assert [i.uri for i in items] == [str(tmp_path / "a/b/x.JPG"), str(tmp_path / "y.webp")]
    reader = Reader()
    first = items[0]
    assert first.image.read(reader) == textile_paths[0].read_bytes()
    assert read_text(first.caption, reader) == "a caption\n"
    assert json.loads(read_text(first.metadata, reader) or "") == {"label": "nominal"}
    assert items[1].caption is None


def test_directory_stamp_changes_when_a_sidecar_changes(tmp_path: Path) -> None:
    (tmp_path / "x.png").write_bytes(b"png")
    before = listed(str(tmp_path))[0].stamp
    (tmp_path / "x.txt").write_text("new caption")
    assert listed(str(tmp_path))[0].stamp != before


def test_csv_of_relative_paths_carries_extra_columns_as_metadata(
    tmp_path: Path, textile_paths: list[Path]
) -> None:
    (tmp_path / "imgs").mkdir()
    (tmp_path / "imgs" / "one.jpg").write_bytes(textile_paths[1].read_bytes())
    table = tmp_path / "list.csv"
    table.write_text("image_path,caption,label,score\nimgs/one.jpg,a textile,nominal,0.5\n")

    [item] = listed(str(table))
    assert item.uri == str(tmp_path / "imgs" / "one.jpg")
    assert item.caption == "a textile"
    assert json.loads(item.metadata) == {"label": "nominal", "score": 0.5}
    assert item.image.read(Reader()) == textile_paths[1].read_bytes()


def test_table_needs_a_path_column(tmp_path: Path) -> None:
    table = tmp_path / "list.csv"
    table.write_text("where,caption\nx.jpg,c\n")
    with pytest.raises(SourceError, match="--path-column"):
        listed(str(table))
    [item] = listed(str(table), path_column="where")
    assert item.uri.endswith("x.jpg")


def test_img2dataset_parquet_with_image_bytes(tmp_path: Path, textile_paths: list[Path]) -> None:
    images = [p.read_bytes() for p in textile_paths[:5]]
    table = pa.table(
        {
            "key": [f"{i:09d}" for i in range(5)],
            "jpg": pa.array(images, pa.binary()),
            "caption": [f"caption {i}" for i in range(5)],
            "url": [f"http://example.invalid/{i}.jpg" for i in range(5)],
        }
    )
    path = tmp_path / "00000.parquet"
    pq.write_table(table, path, row_group_size=2)

    items = listed(str(tmp_path))  # a folder of parquet files is detected as a table source
    assert [i.uri for i in items] == [f"{path}#{i:09d}" for i in range(5)]
    reader = Reader()
    assert [i.image.read(reader) for i in items] == images
    assert items[3].caption == "caption 3"
    assert json.loads(items[3].metadata)["url"].endswith("3.jpg")


def write_tar(path: Path, members: dict[str, bytes]) -> None:
    with tarfile.open(path, "w") as tar:
        for name, content in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(content)
            tar.addfile(info, io.BytesIO(content))


def test_webdataset_tars(tmp_path: Path, textile_paths: list[Path]) -> None:
    image = textile_paths[2].read_bytes()
    write_tar(
        tmp_path / "00000.tar",
        {
            "000000000.jpg": image,
            "000000000.txt": b"first",
            "000000000.json": b'{"url": "u"}',
            "000000001.jpg": b"broken",
            "000000002.txt": b"a caption without an image",
        },
    )
    write_tar(tmp_path / "00001.tar", {"000000003.png": image})

    items = listed(str(tmp_path))
    assert [i.uri.split("/")[-1] for i in items] == [
        "00000.tar#000000000.jpg",
        "00000.tar#000000001.jpg",
        "00001.tar#000000003.png",
    ]
    reader = Reader()
    assert items[0].image.read(reader) == image
    assert read_text(items[0].caption, reader) == "first"
    assert read_text(items[0].metadata, reader) == '{"url": "u"}'
    assert listed(str(tmp_path / "*.tar")) == items
    assert listed(str(tmp_path / "00001.tar")) == items[2:]


def test_detection_errors_are_clear(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="no such file"):
        detect_format(SourceSpec(str(tmp_path / "missing")))
    (tmp_path / "data.bin").write_bytes(b"x")
    with pytest.raises(SourceError, match="--source-format"):
        detect_format(SourceSpec(str(tmp_path / "data.bin")))
    with pytest.raises(SourceError, match="matches no files"):
        detect_format(SourceSpec(str(tmp_path / "*.tar")))
    (tmp_path / "bad.tar").write_bytes(b"not a tar at all" * 100)
    with pytest.raises(SourceError, match="not a readable uncompressed tar"):
        listed(str(tmp_path / "bad.tar"))


def test_explicit_format_wins(tmp_path: Path) -> None:
    (tmp_path / "x.jpg").write_bytes(b"x")
    write_tar(tmp_path / "a.tar", {"k.jpg": b"x"})
    assert detect_format(SourceSpec(str(tmp_path)))[0] is SourceFormat.WEBDATASET
    kind, _ = detect_format(SourceSpec(str(tmp_path), SourceFormat.IMAGES))
    assert kind is SourceFormat.IMAGES
