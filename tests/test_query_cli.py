"""`clipsearch query`'s steering flags: the --where parser as a table, then every flag
end to end against a real server (that it reaches the server and shapes what comes back)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from PIL import Image

from clipsearch.cli.main import main
from clipsearch.cli.query import format_pages, parse_where
from clipsearch.filters import Condition, Equals, Exists, In, NotIn, Prefix, field
from clipsearch.indexer import BuildConfig, EmbedConfig, SourceSpec, run_build, run_embed
from clipsearch.server.app import RunningServer
from clipsearch.types import Hit, SearchResult, Timing
from tests.served import ServedCollection

WHERE = [
    ("metadata.year >= 2023", field("metadata.year") >= 2023.0),
    ("metadata.year>=2023", field("metadata.year") >= 2023.0),
    ("width < 640", field("width") < 640.0),
    ("width <= 6.4e2", field("width") <= 640.0),
    ("width > -1", field("width") > -1.0),
    ("embedded_at > 2024-01-01", field("embedded_at") > "2024-01-01"),  # dates are text
    ("metadata.kind = photo", field("metadata.kind").equals("photo")),
    ("metadata.kind == photo", field("metadata.kind").equals("photo")),
    ("metadata.year = 2023", Condition("metadata.year", Equals(2023.0))),
    ("metadata.code = '0042'", field("metadata.code").equals("0042")),  # quoted: text
    ('metadata.code = "0042"', field("metadata.code").equals("0042")),
    ("metadata.public = true", field("metadata.public").equals(True)),
    ("metadata.public = 'true'", field("metadata.public").equals("true")),
    ("caption = a photo: cat", field("caption").equals("a photo: cat")),  # spaces kept
    ("metadata.kind != photo", Condition("metadata.kind", NotIn(("photo",)))),
    ("metadata.tags in holiday,beach", field("metadata.tags").is_in(["holiday", "beach"])),
    ("metadata.year in 2022, 2023", Condition("metadata.year", In((2022.0, 2023.0)))),
    ("uri prefix /photos/", field("uri").prefix("/photos/")),
    ("uri prefix '/my photos/'", Condition("uri", Prefix("/my photos/"))),
    ("metadata.private exists", field("metadata.private").exists()),
    ("  metadata.private missing  ", Condition("metadata.private", Exists(False))),
    ("metadata.index in 1", Condition("metadata.index", In((1.0,)))),  # `in` in a name
]


@pytest.mark.parametrize(("text", "expected"), WHERE)
def test_where_reads_into_a_typed_condition(text: str, expected: Condition) -> None:
    parsed = parse_where(text)
    assert repr(parsed) == repr(expected)  # types too: 1.0, True and "1" differ


BAD_WHERE = [
    ("metadata.year", "is not a condition"),
    ("metadata.year 2023", "is not a condition"),
    ("= 2023", "is not a condition"),
    ("metadata.year ~ 2023", "is not a condition"),
    ("metadata.year => 2023", "=> is not an operator"),
    ("metadata.year <> 2023", "<> is not an operator"),
    ("metadata.year >=", ">= needs a value"),
    ("metadata.tags in", "in needs a value"),
    ("metadata.tags in a,,b", "empty value"),
    ("metadata.tags exists yes", "exists takes no value"),
    ("metadata.tags missing 1", "missing takes no value"),
    ("", "is not a condition"),
]


@pytest.mark.parametrize(("text", "words"), BAD_WHERE)
def test_a_bad_where_says_what_is_wrong(text: str, words: str) -> None:
    with pytest.raises(ValueError, match=words):
        parse_where(text)


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["--where", "metadata.year 2023"], ("--where", "is not a condition", "FIELD OP VALUE",
                                             "prefix", "exists", "missing")),
        (["--min-score", "1.5"], ("--min-score", "-1 to 1")),
        (["--collapse", "0"], ("--collapse", "(0, 1]")),
        (["--pages", "0"], ("--pages", "positive")),
        (["--pages", "two"], ("--pages", "positive")),
        (["--min-score", "high"], ("--min-score", "'high' is not a number")),
    ],
)  # fmt: skip
def test_bad_steering_flags_are_usage_errors_naming_the_flag(
    argv: list[str], words: tuple[str, ...], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["query", "--text", "cat", "--server", "127.0.0.1:1", *argv])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    for word in words:
        assert word in err, err


def test_the_table_shows_folded_hits_and_the_next_page_token() -> None:
    def page(ids: list[int], token: str) -> SearchResult:
        hits = [Hit(i, 0.5, f"/p/{i}.jpg", duplicates=i % 3) for i in ids]
        return SearchResult(hits, "v000007", Timing(2.0, 0.0, 1.0, 0.5), token)

    one = format_pages([page([1], "")]).splitlines()
    assert one[-1].startswith("1 hits from index v000007 in 2.0 ms")
    lines = format_pages([page([1, 2], "t1"), page([3, 4], "t2")]).splitlines()
    rows = lines[1:5]
    assert [row.split()[0] for row in rows] == ["1", "2", "3", "4"]  # ranks run on
    assert rows[0].endswith("/p/1.jpg  +1 similar") and rows[1].endswith("+2 similar")
    assert rows[2].endswith("/p/3.jpg")  # stands for nothing: no count
    assert lines[5] == "4 hits on 2 pages from index v000007 in 4.0 ms (encode 2.0, search 1.0)"
    assert lines[6] == "next page: --page-token t2"


# --- against a real server --------------------------------------------------------------


def _query(
    server: RunningServer, capsys: pytest.CaptureFixture[str], *flags: str
) -> list[dict[str, object]]:
    """The pages `query --json` prints, one JSON object a line."""
    argv = ["query", "--server", f"127.0.0.1:{server.port}", "--json", *flags]
    assert main(argv) == 0
    return [json.loads(line) for line in capsys.readouterr().out.splitlines()]


def _hits(pages: list[dict[str, object]]) -> list[dict[str, object]]:
    return [hit for page in pages for hit in page["hits"]]  # type: ignore[attr-defined]


def test_where_reaches_the_server_and_all_must_hold(
    served_collection: ServedCollection,
    start_server: Callable[..., RunningServer],
    capsys: pytest.CaptureFixture[str],
) -> None:
    server = start_server(served_collection.index)
    search = ("--text", "a striped textile", "--top-k", "25")
    assert len(_hits(_query(server, capsys, *search))) == 25
    nothing = _query(server, capsys, *search, "--where", "uri prefix /nowhere/")
    assert len(nothing) == 1 and _hits(nothing) == []

    folder = f"{served_collection.images}/group1/"
    in_folder = [str(p) for p in sorted(served_collection.images.glob("group1/*.jpg"))]
    assert len(in_folder) > 2
    hits = _hits(_query(server, capsys, *search, "--where", f"uri prefix {folder}"))
    assert sorted(str(h["uri"]) for h in hits) == in_folder
    both = _hits(_query(server, capsys, *search, "--where", f"uri prefix {folder}",
                        "--where", f"uri != {in_folder[0]}", "--where", "width > 0"))  # fmt: skip
    assert sorted(str(h["uri"]) for h in both) == in_folder[1:]

    assert main(["query", "--server", f"127.0.0.1:{server.port}", *search,
                 "--where", "metadata.year >= 2023"]) == 1  # fmt: skip
    err = capsys.readouterr().err
    assert "metadata.year" in err and "Traceback" not in err  # the server's own words


def test_pages_follow_the_token_and_concatenate_to_the_whole(
    served_collection: ServedCollection,
    start_server: Callable[..., RunningServer],
    capsys: pytest.CaptureFixture[str],
) -> None:
    server = start_server(served_collection.index)
    text = ("--text", "a photo of a rocket")
    whole = [h["id"] for h in _hits(_query(server, capsys, *text, "--top-k", "25"))]
    assert len(whole) == 25

    three = _query(server, capsys, *text, "--top-k", "4", "--pages", "3")
    assert [len(page["hits"]) for page in three] == [4, 4, 4]  # type: ignore[arg-type]
    assert [h["id"] for h in _hits(three)] == whole[:12]
    assert three[-1]["next_page_token"]

    every = _query(server, capsys, *text, "--top-k", "10", "--pages", "100")
    assert len(every) == 3 and every[-1]["next_page_token"] == ""  # stops where hits end
    assert [h["id"] for h in _hits(every)] == whole

    # The table prints the token; --page-token continues from it.
    assert main(["query", "--server", f"127.0.0.1:{server.port}", *text, "--top-k", "4"]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[-1].startswith("next page: --page-token ")
    token = table[-1].split()[-1]
    second = _query(server, capsys, *text, "--top-k", "4", "--page-token", token)
    assert [h["id"] for h in _hits(second)] == whole[4:8]


def test_min_score_and_collapse_reach_the_server(
    served_collection: ServedCollection,
    start_server: Callable[..., RunningServer],
    capsys: pytest.CaptureFixture[str],
) -> None:
    server = start_server(served_collection.index)
    text = ("--text", "a cup of coffee", "--top-k", "25")
    whole = _hits(_query(server, capsys, *text))
    cut = float(whole[10]["score"])  # type: ignore[arg-type]
    kept = _hits(_query(server, capsys, *text, "--min-score", str(cut)))
    assert [h["id"] for h in kept] == [h["id"] for h in whole if float(h["score"]) >= cut]  # type: ignore[arg-type]
    assert 10 <= len(kept) < 25

    # Random weights put every item near every other: the default threshold folds a lot,
    # and each of the 25 items is a hit or counted in one.
    folded = _hits(_query(server, capsys, *text, "--collapse"))
    assert len(folded) < 25
    assert sum(1 + int(h["duplicates"]) for h in folded) == 25  # type: ignore[call-overload]
    strict = _hits(_query(server, capsys, *text, "--collapse", "0.9999"))
    assert len(strict) > len(folded)

    assert main(["query", "--server", f"127.0.0.1:{server.port}", *text, "--collapse"]) == 0
    table = capsys.readouterr().out
    assert table.count(" similar\n") == sum(1 for h in folded if h["duplicates"])
    assert f"+{folded[0]['duplicates']} similar" in table


def test_captions_and_info_reach_the_server(
    served_collection: ServedCollection,
    start_server: Callable[..., RunningServer],
    capsys: pytest.CaptureFixture[str],
) -> None:
    server = start_server(served_collection.index)
    target = f"127.0.0.1:{server.port}"
    assert main(["query", "--server", target, "--info"]) == 0
    info = capsys.readouterr().out
    assert "uri (string)" in info and "width (number)" in info  # what --where can test
    assert "not indexed" in info
    # The served collection was embedded without captions: the server says so, and how.
    assert main(["query", "--server", target, "--text", "a cat", "--captions"]) == 1
    err = capsys.readouterr().err
    assert "no captions indexed" in err and "--embed-captions" in err


@pytest.fixture(scope="module")
def captioned(
    tmp_path_factory: pytest.TempPathFactory,
    served_collection: ServedCollection,
    photos: dict[str, Image.Image],
) -> Path:
    """The five photos with their captions embedded, so captions can be searched."""
    root = tmp_path_factory.mktemp("captioned")
    images = root / "images"
    images.mkdir()
    for name, photo in photos.items():
        photo.save(images / f"{name}.jpg", quality=90)
        (images / f"{name}.txt").write_text(f"a photo of {name.replace('_', ' ')}")
    model = served_collection.model
    run_embed(EmbedConfig(SourceSpec(str(images)), root / "shards", model, embed_captions=True,
                          quiet=True))  # fmt: skip
    run_build(BuildConfig(root / "shards", root / "index", eval_queries=5))
    return root / "index"


def test_captions_searches_the_captions(
    captioned: Path,
    start_server: Callable[..., RunningServer],
    capsys: pytest.CaptureFixture[str],
) -> None:
    server = start_server(captioned)
    text = ("--text", "a photo of chelsea", "--top-k", "5")
    # A caption's own words embed to the caption's vector: it scores 1 against itself,
    # which no image reaches.
    by_caption = _hits(_query(server, capsys, *text, "--captions"))
    assert str(by_caption[0]["uri"]).endswith("chelsea.jpg")
    assert by_caption[0]["caption"] == "a photo of chelsea"
    assert float(by_caption[0]["score"]) == pytest.approx(1.0, abs=2e-3)  # type: ignore[arg-type]
    by_image = _hits(_query(server, capsys, *text))
    assert max(float(h["score"]) for h in by_image) < 0.99  # type: ignore[arg-type]

    assert main(["query", "--server", f"127.0.0.1:{server.port}", "--info"]) == 0
    assert "indexed (--captions)" in capsys.readouterr().out
