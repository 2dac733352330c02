"""The error contract of the command line, as a table: a wrong turn ends in one line
`clipsearch: error: WHAT`, often a `hint: WHAT TO DO` line, a documented exit code, no
traceback, and nothing left behind that blocks the next try."""

from __future__ import annotations

import json
import logging
import socket
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from PIL import Image

from clipsearch.cli.main import main
from clipsearch.collection.manifest import FileKind, read_manifest
from clipsearch.encoder import load_encoder
from clipsearch.index.manifest import current_version
from clipsearch.index.version import IndexVersion
from clipsearch.models import ModelSpec
from tests.conftest import TINY, make_collection
from tests.served import ServedCollection


@dataclass(frozen=True)
class Case:
    argv: Callable[[Path, ServedCollection, int], list[str]]  # (tmp, served, a busy port)
    code: int
    words: tuple[str, ...]  # all of them appear in stderr ({busy}: the busy port)
    hint: str | None = None  # in the `hint:` line


def _tiny(served: ServedCollection) -> list[str]:
    return ["--model", TINY, "--pretrained", served.model.pretrained]


CASES = {
    "embed a missing folder": Case(
        lambda tmp, s, _: ["embed", str(tmp / "nope"), "--out", str(tmp / "out"), *_tiny(s)],
        1, ("no such file or directory",),
    ),
    "embed an empty folder": Case(
        lambda tmp, s, _: ["embed", str(_empty(tmp)), "--out", str(tmp / "out"), *_tiny(s)],
        1, ("holds no images",), ".jpg",
    ),
    "build without embedding first": Case(
        lambda tmp, s, _: ["build", str(_empty(tmp)), "--out", str(tmp / "index")],
        1, ("no manifest.json", "clipsearch embed"),
    ),
    "versions of a missing folder": Case(
        lambda tmp, s, _: ["versions", str(tmp / "nope")], 1, ("is not a folder",), "--out"
    ),
    "versions of an empty folder": Case(
        lambda tmp, s, _: ["versions", str(_empty(tmp))], 1, ("holds no index versions",),
        "clipsearch build",
    ),
    "serve a missing folder": Case(
        lambda tmp, s, _: ["serve", "--index", str(tmp / "nope")], 1, ("is not a folder",),
        "--wait",
    ),
    "serve a folder with no version": Case(
        lambda tmp, s, _: ["serve", "--index", str(_empty(tmp))], 1,
        ("holds no index version yet",), "--wait",
    ),
    "serve on a busy port": Case(
        lambda tmp, s, busy: ["serve", "--index", str(s.index), "--port", str(busy)], 1,
        ("cannot serve gRPC", "{busy}"), "--port",
    ),
    "serve metrics on a busy port": Case(
        lambda tmp, s, busy: ["serve", "--index", str(s.index), "--port", "0",
                              "--metrics-port", str(busy)], 1,
        ("cannot serve metrics", "{busy}"), "--metrics-port",
    ),
    "serve HTTP on a busy port": Case(
        lambda tmp, s, busy: ["serve", "--index", str(s.index), "--port", "0",
                              "--metrics-port", "-1", "--http-port", str(busy)], 1,
        ("cannot serve HTTP", "{busy}"), "--http-port",
    ),
    "query with no server there": Case(
        lambda tmp, s, busy: ["query", "--text", "cat", "--server", f"127.0.0.1:{busy}",
                              "--timeout", "5"], 1,
        ("UNAVAILABLE",), "127.0.0.1:{busy}",
    ),
    "health with no server there": Case(
        lambda tmp, s, busy: ["health", "--server", f"127.0.0.1:{busy}", "--timeout", "5"], 1,
        ("UNAVAILABLE",), "--server",
    ),
    "classify without labels": Case(
        lambda tmp, s, _: ["query", "--classify", str(tmp), "--server", "127.0.0.1:1"], 1,
        ("--classify needs --labels",),
    ),
    "a usage error": Case(lambda tmp, s, _: ["query", "--server", "x:1"], 2, ("required",)),
}  # fmt: skip


def _empty(tmp: Path) -> Path:
    folder = tmp / "empty"
    folder.mkdir(exist_ok=True)
    return folder


@pytest.fixture
def busy_port(request: pytest.FixtureRequest) -> Iterator[int]:
    """A port something else listens on, for the server cases; for the client cases, a
    port nothing listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        if request.node.callspec.params["name"].startswith(("query", "health")):
            port = sock.getsockname()[1]
            sock.close()
            yield port
            return
        sock.listen()
        yield sock.getsockname()[1]


@pytest.mark.parametrize("name", list(CASES))
def test_every_wrong_turn_says_what_and_what_to_do(
    name: str,
    tmp_path: Path,
    served_collection: ServedCollection,
    busy_port: int,
    capsys: pytest.CaptureFixture[str],
) -> None:
    case = CASES[name]
    argv = case.argv(tmp_path, served_collection, busy_port)
    before = sorted(tmp_path.rglob("*"))
    try:
        code = main(argv)
    except SystemExit as exit_:  # argparse's usage errors
        code = int(exit_.code or 0)
    err = capsys.readouterr().err
    assert code == case.code, err
    assert "Traceback" not in err
    for word in case.words:
        assert word.replace("{busy}", str(busy_port)).lower() in err.lower(), err
    if code == 1:
        lines = [line for line in err.splitlines() if line.startswith("clipsearch: error: ")]
        assert len(lines) == 1, err
    if case.hint is not None:
        hints = [line for line in err.splitlines() if line.startswith("hint: ")]
        assert len(hints) == 1 and case.hint.replace("{busy}", str(busy_port)) in hints[0], err
    assert sorted(tmp_path.rglob("*")) == before, "a failed command left files behind"


def test_a_failed_embed_leaves_nothing_that_blocks_the_next(
    tmp_path: Path, textile_paths: list[Path], capsys: pytest.CaptureFixture[str]
) -> None:
    """The first try names a missing folder; the second, corrected, with another model,
    is not refused for mixing models."""
    out = tmp_path / "out"
    assert main(["embed", str(tmp_path / "nope"), "--out", str(out), "--model", TINY,
                 "--pretrained", "none"]) == 1  # fmt: skip
    assert not out.exists()
    source = make_collection(tmp_path / "src", textile_paths[:4])
    assert main(["embed", str(source), "--out", str(out), "--model", "ViT-B-32",
                 "--pretrained", "none", "--quiet", "--workers", "0"]) == 0  # fmt: skip
    assert "refusing" not in capsys.readouterr().err


def test_debug_shows_the_traceback(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(Exception, match="is not a folder"):
        main(["--debug", "versions", str(tmp_path / "nope")])


def test_a_message_over_the_limit_names_the_server_flag(
    tmp_path: Path,
    served_collection: ServedCollection,
    start_server: Callable[..., object],
    capsys: pytest.CaptureFixture[str],
) -> None:
    server = start_server(served_collection.index, max_message_bytes=64 * 1024)
    big = tmp_path / "big.jpg"
    big.write_bytes(bytes(200 * 1024))
    target = f"127.0.0.1:{server.port}"  # type: ignore[attr-defined]
    assert main(["query", "--image", str(big), "--server", target]) == 1
    err = capsys.readouterr().err
    assert "RESOURCE_EXHAUSTED" in err and "Traceback" not in err
    assert "hint:" in err and "--max-message-mb" in err


# --- output that is true ------------------------------------------------------------------


@dataclass(frozen=True)
class Truth:
    """A command on a small real collection, and what its output must and must not say."""

    argv: Callable[[Path, Path], list[str]]  # (shards of 66 vectors, a scratch folder)
    says: tuple[str, ...]
    never: tuple[str, ...]


TRUTHS = {
    "evaluation queries are counted as they are": Truth(
        lambda shards, tmp: ["build", str(shards), "--out", str(tmp / "i")],
        ("exact neighbours of 66 held-out queries",), ("of 1,000 held-out", "of 1000 held-out"),
    ),
    "an exact index trains nothing": Truth(
        lambda shards, tmp: ["build", str(shards), "--out", str(tmp / "i")],
        ("Flat",), ("training on",),
    ),
    "--add onto an exact index says it rebuilds": Truth(
        lambda shards, tmp: [*_built(shards, tmp), "--add"],
        ("rebuilt with 66 vectors",), ("+66 rows", "+0 rows"),
    ),
}  # fmt: skip


def _built(shards: Path, tmp: Path) -> list[str]:
    assert main(["build", str(shards), "--out", str(tmp / "i")]) == 0
    return ["build", str(shards), "--out", str(tmp / "i")]


@pytest.mark.parametrize("name", list(TRUTHS))
def test_output_is_true(
    name: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    from bench.synthetic import write_synthetic_shards
    from tests.synthetic import clustered_vectors

    shards = tmp_path / "shards"
    write_synthetic_shards(shards, clustered_vectors(66, 16))
    truth = TRUTHS[name]
    argv = truth.argv(shards, tmp_path)
    capsys.readouterr()
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="clipsearch"):
        assert main(argv) == 0
    said = capsys.readouterr().out + caplog.text
    for words in truth.says:
        assert words in said, said
    for words in truth.never:
        assert words not in said, said


def test_shards_hold_the_size_asked_for(tmp_path: Path, textile_paths: list[Path]) -> None:
    source = make_collection(tmp_path / "src", textile_paths[:150])
    out = tmp_path / "shards"
    argv = ["embed", str(source), "--out", str(out), "--model", TINY, "--pretrained", "none",
            "--shard-size", "100", "--batch-size", "32", "--workers", "0", "--quiet"]  # fmt: skip
    assert main(argv) == 0
    manifest = read_manifest(out)
    assert manifest is not None
    rows = [f.rows for f in manifest.files_of(FileKind.EMBEDDINGS)]
    assert rows == [100, 50]


def test_scores_stay_within_cosine_range_and_metadata_has_no_line_endings(
    tmp_path: Path, photos: dict[str, Image.Image], capsys: pytest.CaptureFixture[str]
) -> None:
    """An image searched for itself scores at most 1 (float16 storage could push it past);
    a sidecar's trailing newline does not reach the metadata."""
    source = tmp_path / "src"
    source.mkdir()
    for name, photo in photos.items():
        photo.save(source / f"{name}.jpg", quality=90)
        (source / f"{name}.json").write_text(json.dumps({"name": name}) + "\n")
    model = ["--model", TINY, "--pretrained", "none"]
    assert main(["embed", str(source), "--out", str(tmp_path / "s"), *model, "--quiet",
                 "--workers", "0"]) == 0  # fmt: skip
    assert main(["build", str(tmp_path / "s"), "--out", str(tmp_path / "i")]) == 0
    version = IndexVersion(current_version(tmp_path / "i"))  # type: ignore[arg-type]
    assert all("\n" not in (version.records.get(r).metadata or "") for r in range(5))
    encoder = load_encoder(ModelSpec(TINY, "none", device="cpu"))
    query = encoder.encode_images([photos["chelsea"]])
    found = version.search(query, 5)
    assert found.scores.max() > 0.999  # it finds itself
    from clipsearch.server.core.searching import Planned, search
    from clipsearch.types import SearchQuery, VectorQuery

    planned = Planned(SearchQuery(VectorQuery(query[0])), version, 0, "")
    served = search(planned, query, 5)  # what the server answers with
    assert served.scores.max() <= 1.0
