"""Several named indexes in one server: each answers in its own model's space, one model
is loaded once for all its indexes, and one index reloads while the others serve."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from clipsearch.client import ImageQuery, RpcError, SearchClient, TextQuery
from clipsearch.indexer import BuildConfig, EmbedConfig, SourceSpec, run_build, run_embed
from clipsearch.models import ModelSpec
from clipsearch.server.app import RunningServer, start
from clipsearch.server.config import NamedIndex, ServerConfig
from tests.served import ServedCollection


@pytest.fixture(scope="module")
def other_model_index(
    tmp_path_factory: pytest.TempPathFactory, served_collection: ServedCollection
) -> Path:
    """The photos of the served collection, embedded with another model (ViT-B-32, random
    init: 512-d where the tiny model is 64-d)."""
    root = tmp_path_factory.mktemp("vit")
    images = root / "images"
    images.mkdir()
    for photo in sorted(served_collection.images.glob("*.jpg")):
        (images / photo.name).write_bytes(photo.read_bytes())
    model = ModelSpec("ViT-B-32", "none", device="cpu")
    run_embed(EmbedConfig(SourceSpec(str(images)), root / "shards", model, quiet=True))
    run_build(BuildConfig(root / "shards", root / "index", eval_queries=5))
    return root / "index"


@pytest.fixture
def two_models(
    tmp_path: Path, served_collection: ServedCollection, other_model_index: Path
) -> Iterator[RunningServer]:
    indexes = (
        NamedIndex("textiles", served_collection.copy_index(tmp_path / "textiles")),
        NamedIndex("vit", other_model_index),
    )
    server = start(ServerConfig(indexes, port=0, metrics_port=0, reload_interval_s=0.1))
    yield server
    server.stop(0)


def test_each_index_answers_in_its_own_space(
    two_models: RunningServer, served_collection: ServedCollection
) -> None:
    photo = served_collection.images / "chelsea.jpg"
    with SearchClient(f"127.0.0.1:{two_models.port}") as client:
        tiny, vit = client.index_info("textiles"), client.index_info("vit")
        assert (tiny.dim, vit.dim) == (64, 512)
        assert tiny.served_indexes == vit.served_indexes == ("textiles", "vit")
        for name in ("textiles", "vit"):
            first = client.search(ImageQuery(photo.read_bytes()), top_k=3, index=name).hits[0]
            assert Path(first.uri).name == "chelsea.jpg" and first.score > 0.999
        assert client.embed(texts=["a cat"], index="vit").texts.shape == (1, 512)
        assert client.embed(texts=["a cat"], index="textiles").texts.shape == (1, 64)

        with pytest.raises(RpcError) as unnamed:
            client.search(TextQuery("a cat"))
        assert unnamed.value.code is grpc.StatusCode.INVALID_ARGUMENT
        assert "textiles, vit" in unnamed.value.details
        with pytest.raises(RpcError) as unknown:
            client.search(TextQuery("a cat"), index="nope")
        assert unknown.value.code is grpc.StatusCode.NOT_FOUND
        assert "'nope' is not served here; it serves textiles, vit" in unknown.value.details
        with pytest.raises(RpcError) as which_model:
            client.embed(texts=["a cat"])  # two models: the index decides
        assert which_model.value.code is grpc.StatusCode.INVALID_ARGUMENT
    assert len(two_models.served.encodings) == 2


def test_one_index_reloads_while_the_other_keeps_serving(
    two_models: RunningServer, served_collection: ServedCollection
) -> None:
    textiles = two_models.served.index("textiles").holder.index_dir
    with SearchClient(f"127.0.0.1:{two_models.port}") as client:
        before = client.index_info("vit").index_version
        old = client.index_info("textiles").index_version
        new = run_build(BuildConfig(served_collection.shards, textiles, eval_queries=10))
        deadline = time.monotonic() + 10
        while client.index_info("textiles").index_version != new.manifest.version:
            assert client.search(TextQuery("a cat"), index="vit").index_version == before
            assert time.monotonic() < deadline, "the new version was not picked up"
            time.sleep(0.05)
        assert old != new.manifest.version
        assert client.index_info("vit").index_version == before


def test_indexes_of_one_model_share_it(tmp_path: Path, served_collection: ServedCollection) -> None:
    indexes = tuple(
        NamedIndex(name, served_collection.copy_index(tmp_path / name)) for name in ("a", "b")
    )
    server = start(ServerConfig(indexes, port=0, metrics_port=None))
    try:
        assert len(server.served.encodings) == 1
        with SearchClient(f"127.0.0.1:{server.port}") as client:
            assert client.embed(texts=["a cat"]).texts.shape == (1, 64)  # one model: no name
            hits = [client.search(TextQuery("a cat"), index=n).hits for n in ("a", "b")]
        assert [h.id for h in hits[0]] == [h.id for h in hits[1]]
    finally:
        server.stop(0)


def test_serve_names_its_indexes_from_the_command_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from clipsearch.cli.main import build_parser, main
    from clipsearch.cli.serve import config_from_args

    argv = ["serve", "--index", "photos=/data/p", "--index", "/data/products-index"]
    config = config_from_args(build_parser(["serve"]).parse_args(argv))
    assert [(n.name, str(n.path)) for n in config.indexes] == [
        ("photos", "/data/p"),
        ("products-index", "/data/products-index"),
    ]
    assert main(["serve", "--index", f"a={tmp_path}", "--index", f"a={tmp_path}"]) == 1
    err = capsys.readouterr().err
    assert "two indexes are named 'a'" in err and "hint: give each --index its own name" in err
    with pytest.raises(SystemExit):
        main(["serve", "--index", f"b@d={tmp_path}"])
    assert "is not an index name" in capsys.readouterr().err


def test_query_names_the_index(
    two_models: RunningServer,
    served_collection: ServedCollection,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from clipsearch.cli.main import main

    target = f"127.0.0.1:{two_models.port}"
    photo = str(served_collection.images / "chelsea.jpg")
    assert main(["query", "--server", target, "--info", "--index", "vit"]) == 0
    info = capsys.readouterr().out
    assert "vit (served: textiles, vit)" in info and "512-d" in info
    assert main(["query", "--server", target, "--image", photo, "--index", "vit"]) == 0
    assert "chelsea.jpg" in capsys.readouterr().out.splitlines()[1]
    assert main(["query", "--server", target, "--image", photo]) == 1
    assert "textiles, vit" in capsys.readouterr().err
