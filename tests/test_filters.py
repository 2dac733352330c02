"""Metadata filters, data side: the fields a build writes, the type-inference rule, and
filters evaluated into row masks, checked against plain Python over the same metadata."""

from __future__ import annotations

import json
import math
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from PIL import Image

from clipsearch.collection.ids import item_id
from clipsearch.collection.manifest import (
    EmbeddingFormat,
    FileKind,
    Manifest,
    RunRecord,
    VectorDtype,
    read_manifest,
    write_manifest,
)
from clipsearch.collection.shards import (
    DELETIONS_SCHEMA,
    embeddings_schema,
    vector_column,
    write_shard_file,
)
from clipsearch.filters import (
    AllOf,
    AnyOf,
    Between,
    Condition,
    Equals,
    Filter,
    In,
    Not,
    NotIn,
    field,
)
from clipsearch.index.fields import FieldSchema, parse_date, read_fields
from clipsearch.index.manifest import FIELDS_FILE, MANIFEST_FILE, REMOVED, IndexManifest
from clipsearch.index.version import IndexVersion
from clipsearch.indexer import BuildConfig, EmbedConfig, SourceSpec, run_build, run_embed
from clipsearch.indexer.build.field_types import SchemaInference
from clipsearch.indexer.build.job import BuildKind
from clipsearch.models import ModelSpec
from clipsearch.server.core.calls import RequestError, Status
from clipsearch.server.core.config import Limits
from clipsearch.server.core.filter_check import check, check_shape
from clipsearch.server.core.filtering import FilterMasks, row_mask
from clipsearch.types import FieldInfo, FieldType
from tests.conftest import TINY
from tests.synthetic import clustered_vectors

DIM = 16
FORMAT = EmbeddingFormat("synthetic", "none", DIM, None, VectorDtype.FLOAT16, False)
RUN_STARTED = {1: "2023-05-01T10:00:00+00:00", 2: "2024-01-15T08:30:00+00:00"}
S, N, B, D = FieldType.STRING, FieldType.NUMBER, FieldType.BOOL, FieldType.DATE
ABSENT = object()  # the key is left out of the row


# --- the inference rule ----------------------------------------------------------------

# (what the rows of one key hold, the field it makes or words of why it makes none)
INFERENCE: list[tuple[list[object], FieldInfo | str]] = [
    ([1, 2.5, -3], FieldInfo("metadata.k", N)),
    ([1, None, ABSENT, 4], FieldInfo("metadata.k", N)),
    ([True, False], FieldInfo("metadata.k", B)),
    (["2023-06-01", "2023-06-01T12:00:00Z", "2023-06-01 12:00+02:00"], FieldInfo("metadata.k", D)),
    (["2023-06-01", "June 2023"], FieldInfo("metadata.k", S)),
    (["20230601"], FieldInfo("metadata.k", S)),  # compact forms are not dates
    (["2023-02-30"], FieldInfo("metadata.k", S)),  # not a real day
    (["a", "b"], FieldInfo("metadata.k", S)),
    ([["a", "b"], [], ["c", None]], FieldInfo("metadata.k", S, list=True)),
    ([[1, 2.5], [3]], FieldInfo("metadata.k", N, list=True)),
    ([[True], [False, True]], FieldInfo("metadata.k", B, list=True)),
    ([["2023-01-01"], ["2024-02-03T04:05:06Z"]], FieldInfo("metadata.k", D, list=True)),
    ([1, "a"], "numbers in 1 row (first: row 0), text in 1 row (first: row 1)"),
    ([True, 1, 2], "true/false in 1 row (first: row 0), numbers in 2 rows (first: row 1)"),
    ([{"a": 1}, 3], "objects in 1 row (first: row 0), numbers in 1 row (first: row 1)"),
    ([[1], 2], "lists of numbers in 1 row (first: row 0), numbers in 1 row"),
    ([["a"], [1]], "lists of text in 1 row (first: row 0), lists of numbers in 1 row"),
    ([[[1]]], "lists holding lists or objects (first at row 0)"),
    ([[{"a": 1}]], "lists holding lists or objects (first at row 0)"),
    ([[1, "a"]], "lists mixing kinds (first at row 0)"),
    ([None, ABSENT], "only nulls"),
    ([[], [None]], "only empty lists"),
]


def infer(rows: list[object], key: str = "k") -> FieldSchema:
    inference = SchemaInference()
    for row, value in enumerate(rows):
        inference.add(row, "{}" if value is ABSENT else json.dumps({key: value}))
    return inference.schema()


@pytest.mark.parametrize(("values", "expected"), INFERENCE)
def test_each_key_gets_one_type_or_a_reason(values: list[object], expected: object) -> None:
    schema = infer(values)
    if isinstance(expected, FieldInfo):
        assert schema.get("metadata.k") == expected
        assert "metadata.k" not in schema.unfilterable
    else:
        assert schema.get("metadata.k") is None
        assert str(expected) in schema.unfilterable["metadata.k"]


def test_nested_objects_flatten_to_dotted_paths() -> None:
    rows = ['{"camera": {"model": "A7", "lens": {"mm": 35}}}', '{"camera": {"model": "R5"}}']
    inference = SchemaInference()
    for row, text in enumerate([*rows, None, "", '"just text"', "[1, 2]", "not json"]):
        inference.add(row, text)
    schema = inference.schema()
    assert schema.get("metadata.camera.model") == FieldInfo("metadata.camera.model", S)
    assert schema.get("metadata.camera.lens.mm") == FieldInfo("metadata.camera.lens.mm", N)
    assert schema.get("metadata.camera") is None and "metadata.camera" not in schema.unfilterable
    assert [f.name for f in schema.fields[:5]] == [
        "uri",
        "caption",
        "width",
        "height",
        "embedded_at",
    ]
    # absent metadata is fine; three rows hold text that is no JSON object
    assert (
        "3 rows hold metadata that is not a JSON object (first: row 4)"
        in (schema.unfilterable["metadata"])
    )


def test_keys_with_dots_or_empty_are_unfilterable() -> None:
    schema = infer([1], key="a.b")
    assert "holds a '.'" in schema.unfilterable["metadata.a.b"]
    assert "empty" in infer([1], key="").unfilterable["metadata."]


def test_at_most_256_metadata_fields_the_most_frequent_kept() -> None:
    inference = SchemaInference()
    # key i has a value in 300 - i rows: keys 0..255 are the most frequent
    for row in range(300):
        inference.add(row, json.dumps({f"k{i:03d}": row for i in range(300 - row)}))
    schema = inference.schema()
    names = {f.name for f in schema.fields if f.name.startswith("metadata.")}
    assert names == {f"metadata.k{i:03d}" for i in range(256)}
    assert len(schema.fields) == 5 + 256
    assert (
        "only the 256 metadata keys with values in the most rows"
        in (schema.unfilterable["metadata.k256"])
    )
    assert len(schema.unfilterable) == 300 - 256


def test_a_fresh_key_per_row_costs_bounded_memory() -> None:
    inference = SchemaInference(max_tracked=10)
    for row in range(1000):
        inference.add(row, json.dumps({"common": row, f"uuid-{row}": 1}))
    schema = inference.schema()
    assert schema.get("metadata.common") == FieldInfo("metadata.common", N)
    assert "were not tracked" in schema.unfilterable["metadata.*"]


def test_date_rule() -> None:
    assert parse_date("2023-06-01") == datetime(2023, 6, 1, tzinfo=UTC)
    assert parse_date("2023-06-01T12:30:00+02:00") == datetime(2023, 6, 1, 10, 30, tzinfo=UTC)
    assert parse_date("2023-06-01T12:30:00.5Z") == datetime(2023, 6, 1, 12, 30, 0, 500_000, UTC)
    assert parse_date("2023-06-01 12:30") == datetime(2023, 6, 1, 12, 30, tzinfo=UTC)
    for text in ["2023-6-1", "20230601", "2023-06-01T25:00", "yesterday", "2023-06-01T12", ""]:
        assert parse_date(text) is None, text


# --- a collection with metadata of every kind, built -----------------------------------


@dataclass(frozen=True)
class Item:
    uri: str
    caption: str | None
    width: int
    height: int
    metadata: dict[str, object] | None
    run: int


def make_items(count: int, seed: int, first: int = 0, run: int = 1) -> list[Item]:
    """Seeded metadata: nested keys, lists, dates in several ISO forms, absent keys."""
    rng = np.random.default_rng(seed)
    base = datetime(2019, 1, 1, tzinfo=UTC)
    items = []
    for i in range(first, first + count):
        meta: dict[str, object] = {}
        if rng.random() < 0.8:
            camera: dict[str, object] = {"model": str(rng.choice(["A7", "R5", "X100"]))}
            if rng.random() < 0.5:
                camera["iso"] = int(rng.choice([100, 400, 3200]))
            meta["camera"] = camera
        if rng.random() < 0.85:
            meta["year"] = int(rng.integers(2012, 2025))
        meta["rating"] = round(float(rng.uniform(0, 5)), 2) if rng.random() < 0.9 else None
        if rng.random() < 0.7:
            meta["private"] = bool(rng.random() < 0.3)
        if rng.random() < 0.9:
            taken = base + timedelta(days=int(rng.integers(0, 1500)), hours=int(rng.integers(24)))
            form = int(rng.integers(3))
            meta["taken"] = [
                taken.date().isoformat(),
                taken.isoformat().replace("+00:00", "Z"),
                taken.astimezone(UTC).replace(tzinfo=None).isoformat() + "+00:00",
            ][form]
        if rng.random() < 0.8:
            count_tags = int(rng.integers(0, 4))
            meta["tags"] = [
                str(t) for t in rng.choice(["beach", "city", "dog", "night"], count_tags)
            ]
        if rng.random() < 0.5:
            meta["scores"] = [
                round(float(s), 2) for s in rng.uniform(0, 1, int(rng.integers(1, 3)))
            ]
        meta["mixed"] = int(rng.integers(10)) if i % 2 else "text"
        folder = ["photos/2023", "photos/2024", "scans"][i % 3]
        items.append(
            Item(
                uri=f"{folder}/img-{i}.jpg",
                caption=f"picture {i}" if rng.random() < 0.9 else None,
                width=int(rng.choice([640, 800, 1024, 4000])),
                height=int(rng.choice([480, 600, 3000])),
                metadata=meta if rng.random() < 0.95 else None,
                run=run,
            )
        )
    return items


def write_items(folder: Path, items: list[Item], run: int, seed: int) -> None:
    """Append `items` as one part file of run `run` (with its run record)."""
    folder.mkdir(parents=True, exist_ok=True)
    manifest = read_manifest(folder) or Manifest(embedding=FORMAT)
    vectors = clustered_vectors(len(items), DIM, seed=seed)
    table = pa.table(
        {
            "id": [item_id(it.uri) for it in items],
            "uri": [it.uri for it in items],
            "embedding": vector_column(vectors, "float16"),
            "width": [it.width for it in items],
            "height": [it.height for it in items],
            "content_hash": [""] * len(items),
            "stamp": ["s"] * len(items),
            "caption": [it.caption for it in items],
            "metadata": [None if it.metadata is None else json.dumps(it.metadata) for it in items],
        },
        schema=embeddings_schema(FORMAT),
    )
    entry = write_shard_file(folder, FileKind.EMBEDDINGS, manifest.next_seq, table, FORMAT, run)
    manifest = manifest.with_file(entry).with_run(RunRecord(run, "test", RUN_STARTED[run]))
    write_manifest(folder, manifest)


@dataclass(frozen=True)
class Built:
    version: IndexVersion
    table: pa.Table
    schema: FieldSchema
    items: dict[int, Item]  # item id -> the item its current row holds


def load(path: Path, items: dict[int, Item]) -> Built:
    version = IndexVersion(path)
    table = read_fields(path, rows=version.manifest.rows)
    return Built(version, table, FieldSchema.of(version.manifest), items)


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    root = tmp_path_factory.mktemp("fields")
    first, second = make_items(400, seed=1), make_items(200, seed=2, first=400, run=2)
    write_items(root / "shards", first, run=1, seed=1)
    write_items(root / "shards", second, run=2, seed=2)
    result = run_build(BuildConfig(root / "shards", root / "index", eval_queries=20))
    return load(result.path, {item_id(it.uri): it for it in first + second})


# --- plain Python over the same metadata: the reference --------------------------------

MISSING = object()


def meta(item: Item, path: str) -> object:
    """A metadata value by dotted path, MISSING where absent or null."""
    value: object = item.metadata if item.metadata is not None else {}
    for key in path.split("."):
        if not isinstance(value, dict) or value.get(key) is None:
            return MISSING
        value = value[key]
    return value


def items(item: Item, path: str) -> list[object]:
    """A list value, [] where absent."""
    value = meta(item, path)
    return value if isinstance(value, list) else []


def moment(text: object) -> datetime:
    assert isinstance(text, str)
    parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def has(item: Item, path: str) -> bool:
    return meta(item, path) is not MISSING


def embedded(item: Item) -> datetime:
    return moment(RUN_STARTED[item.run])


Case = tuple[str, Filter, Callable[[Item], bool]]
CASES: list[Case] = [
    ("nested string equals", field("metadata.camera.model").equals("A7"),
     lambda it: meta(it, "camera.model") == "A7"),
    ("string in", field("metadata.camera.model").is_in(["A7", "X100"]),
     lambda it: meta(it, "camera.model") in ("A7", "X100")),
    ("string not_in passes rows without it", field("metadata.camera.model").not_in(["A7"]),
     lambda it: meta(it, "camera.model") != "A7"),
    ("number range", field("metadata.year").between(2016, 2020),
     lambda it: has(it, "year") and 2016 <= meta(it, "year") < 2020),  # type: ignore[operator]
    ("number gt", field("metadata.rating") > 3.5,
     lambda it: has(it, "rating") and meta(it, "rating") > 3.5),  # type: ignore[operator]
    ("number lte and gt", Condition("metadata.year", Between(gt=2014, lte=2015)),
     lambda it: meta(it, "year") in (2015,)),
    ("number equals", field("metadata.camera.iso").equals(400),
     lambda it: meta(it, "camera.iso") == 400),
    ("bool equals", field("metadata.private").equals(True),
     lambda it: meta(it, "private") is True),
    ("date range, date-only bound is midnight UTC",
     field("metadata.taken").between("2020-06-01", "2021-01-01T00:00:00Z"),
     lambda it: has(it, "taken")
     and moment("2020-06-01") <= moment(meta(it, "taken")) < moment("2021-01-01")),
    ("date gt with an offset", field("metadata.taken") > "2022-01-01T02:00:00+02:00",
     lambda it: has(it, "taken") and moment(meta(it, "taken")) > moment("2022-01-01")),
    ("list holds", field("metadata.tags").equals("beach"),
     lambda it: "beach" in items(it, "tags")),
    ("list holds one of", field("metadata.tags").is_in(["dog", "night"]),
     lambda it: bool({"dog", "night"} & set(items(it, "tags")))),
    ("list holds none of", field("metadata.tags").not_in(["beach", "city"]),
     lambda it: not {"beach", "city"} & set(items(it, "tags"))),
    ("number list range", field("metadata.scores").between(0.9, 1.0),
     lambda it: any(0.9 <= s < 1.0 for s in items(it, "scores"))),  # type: ignore[operator]
    ("nested key exists", field("metadata.camera.iso").exists(),
     lambda it: has(it, "camera.iso")),
    ("key missing", field("metadata.rating").missing(), lambda it: not has(it, "rating")),
    ("uri prefix", field("uri").prefix("photos/2023/"),
     lambda it: it.uri.startswith("photos/2023/")),
    ("caption exists", field("caption").exists(), lambda it: it.caption is not None),
    ("caption prefix", field("caption").prefix("picture 1"),
     lambda it: (it.caption or "").startswith("picture 1")),
    ("width range", field("width") >= 1000, lambda it: it.width >= 1000),
    ("height in", field("height").is_in([480, 3000]), lambda it: it.height in (480, 3000)),
    ("embedded_at range", field("embedded_at") >= "2024-01-01", lambda it: it.run == 2),
    ("embedded_at equals", field("embedded_at").equals("2023-05-01T12:00:00+02:00"),
     lambda it: embedded(it) == moment("2023-05-01T10:00:00Z")),
    ("not of a missing value does not match", ~field("metadata.year").equals(2020),
     lambda it: has(it, "year") and meta(it, "year") != 2020),
    ("not of exists", ~field("metadata.private").exists(), lambda it: not has(it, "private")),
    ("all / any / not",
     AllOf((
         field("uri").prefix("photos/"),
         AnyOf((field("metadata.year") < 2016, field("metadata.tags").equals("beach"))),
         Not(field("metadata.private").equals(True)),
     )),
     lambda it: it.uri.startswith("photos/")
     and ((has(it, "year") and meta(it, "year") < 2016)  # type: ignore[operator]
          or "beach" in items(it, "tags"))  # type: ignore[operator]
     and meta(it, "private") is False),
    ("any with unknowns", field("metadata.year").equals(2020) | field("metadata.rating").missing(),
     lambda it: meta(it, "year") == 2020 or not has(it, "rating")),
    ("not of any", ~(field("metadata.year").equals(2020) | field("metadata.private").equals(True)),
     lambda it: has(it, "year") and has(it, "private")
     and meta(it, "year") != 2020 and meta(it, "private") is False),
    ("matches nothing", field("metadata.camera.model").equals("Nikon"), lambda it: False),
]  # fmt: skip


def expected_rows(built: Built, wanted: Callable[[Item], bool]) -> set[int]:
    ids = np.asarray(built.version.ids)
    return {r for r in range(len(ids)) if ids[r] != REMOVED and wanted(built.items[int(ids[r])])}


@pytest.mark.parametrize(("name", "filter", "wanted"), CASES, ids=[c[0] for c in CASES])
def test_filter_masks_equal_plain_python(
    built: Built, name: str, filter: Filter, wanted: Callable[[Item], bool]
) -> None:
    check_shape(filter, Limits())
    mask = row_mask(check(filter, built.schema), built.table)
    assert mask.dtype == bool and mask.shape == (built.version.manifest.rows,)
    assert set(np.flatnonzero(mask)) == expected_rows(built, wanted)


def test_the_cases_are_not_trivial(built: Built) -> None:
    """Each case but the last matches some rows and misses others, so a wrong mask shows."""
    for name, _, wanted in CASES[:-1]:
        matched = len(expected_rows(built, wanted))
        assert 0 < matched < built.version.manifest.rows, name


def test_the_build_records_fields_and_unfilterable_keys(built: Built) -> None:
    m = built.version.manifest
    assert FIELDS_FILE in m.files
    assert {f.name: (f.type, f.list) for f in m.fields} == {
        "uri": (S, False),
        "caption": (S, False),
        "width": (N, False),
        "height": (N, False),
        "embedded_at": (D, False),
        "metadata.camera.model": (S, False),
        "metadata.camera.iso": (N, False),
        "metadata.year": (N, False),
        "metadata.rating": (N, False),
        "metadata.private": (B, False),
        "metadata.taken": (D, False),
        "metadata.tags": (S, True),
        "metadata.scores": (N, True),
    }
    assert list(m.unfilterable) == ["metadata.mixed"]
    assert "text in" in m.unfilterable["metadata.mixed"]
    assert "numbers in" in m.unfilterable["metadata.mixed"]
    again = IndexManifest.from_json(m.to_json())
    assert again.fields == m.fields and again.unfilterable == m.unfilterable
    schema = built.table.schema
    assert schema.field("embedded_at").type == pa.timestamp("us", tz="UTC")
    assert schema.field("metadata.tags").type == pa.list_(pa.string())
    assert schema.field("width").type == pa.float64()


def test_unfilterable_types_are_logged(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    write_items(tmp_path / "shards", make_items(50, seed=3), run=1, seed=3)
    with caplog.at_level("WARNING"):
        run_build(BuildConfig(tmp_path / "shards", tmp_path / "index", eval_queries=10))
    assert "metadata key metadata.mixed cannot be filtered" in caplog.text


# --- bad filters -----------------------------------------------------------------------

SCHEMA = FieldSchema(
    (
        FieldInfo("uri", S),
        FieldInfo("width", N),
        FieldInfo("embedded_at", D),
        FieldInfo("metadata.year", N),
        FieldInfo("metadata.private", B),
        FieldInfo("metadata.tags", S, list=True),
    ),
    {"metadata.mixed": "its values differ in kind: numbers in 3 rows, text in 2 rows"},
)
MANY = FieldSchema(
    tuple(FieldInfo(f"metadata.{n}", S) for n in ["camera_model", "lens", "iso", "place"])
    + tuple(FieldInfo(f"metadata.extra{i}", N) for i in range(12))
)
OK = field("width") > 10


def deep(levels: int) -> Filter:
    filter: Filter = OK
    for _ in range(levels - 1):
        filter = Not(filter)
    return filter


# (the filter, the schema it is checked against, the words of the message, path first)
BAD: list[tuple[Filter, FieldSchema, list[str]]] = [
    (field("metadata.colour").equals("red"), SCHEMA,
     ["filter.condition.field names metadata.colour", "does not have",
      "its fields are uri, width, embedded_at, metadata.year"]),
    (field("metadata.camera_modle").equals("A7"), MANY,
     ["filter.condition.field", "did you mean metadata.camera_model?"]),
    (field("zzz").equals("A7"), MANY,
     ["filter.condition.field names zzz", "it has 16 fields", "GetIndexInfo"]),
    (field("year").equals(2020), SCHEMA,
     ["filter.condition.field", "did you mean metadata.year?", "metadata.KEY"]),
    (field("metadata.mixed").equals(1), SCHEMA,
     ["filter.condition.field: metadata.mixed cannot be filtered", "numbers in 3 rows"]),
    (field("uri").equals("x"), FieldSchema(()),
     ["filter.condition.field", "no filterable fields", "clipsearch build"]),
    (field("metadata.year").between("2020"), SCHEMA,
     ["filter.condition.range.gte is text ('2020')", "metadata.year holds numbers",
      "send a number"]),
    (field("metadata.year") < True, SCHEMA,
     ["filter.condition.range.lt is a truth value (true)", "send a number"]),
    (field("width").prefix("1"), SCHEMA,
     ["filter.condition.prefix tests text", "width holds numbers", "use range"]),
    (field("embedded_at").prefix("2023"), SCHEMA,
     ["filter.condition.prefix tests text", "holds dates", "use range"]),
    (field("metadata.private").prefix("t"), SCHEMA,
     ["filter.condition.prefix", "holds true/false", "use equals"]),
    (field("uri").equals(True), SCHEMA,
     ["filter.condition.equals is a truth value (true), but uri holds text", "send text"]),
    (field("metadata.private").equals("yes"), SCHEMA,
     ["filter.condition.equals is text ('yes')", "holds true/false", "send true or false"]),
    (field("metadata.tags").equals(3), SCHEMA,
     ["filter.condition.equals is a number (3)", "holds lists of text"]),
    (field("uri").between("a", "b"), SCHEMA,
     ["filter.condition.range tests numbers and dates, but uri holds text"]),
    (field("metadata.private").between(0, 1), SCHEMA,
     ["filter.condition.range tests numbers and dates"]),
    (field("embedded_at") >= "2023-13-01", SCHEMA,
     ["filter.condition.range.gte is '2023-13-01', not an ISO 8601 date", "2023-06-01"]),
    (field("embedded_at").is_in(["2023-01-01", "yesterday"]), SCHEMA,
     ["filter.condition.any_of.values[1] is 'yesterday', not an ISO 8601 date"]),
    (field("embedded_at").equals(2023), SCHEMA,
     ["filter.condition.equals is a number (2023)", "send a date"]),
    (Condition("width", Between()), SCHEMA,
     ["filter.condition.range has no bounds", "gt, gte, lt, lte"]),
    (Condition("width", In(())), SCHEMA, ["filter.condition.any_of is empty"]),
    (Condition("width", NotIn(())), SCHEMA, ["filter.condition.none_of is empty"]),
    (Condition("", Equals("x")), SCHEMA, ["filter.condition.field is empty"]),
    (Condition("width", Equals(math.nan)), SCHEMA, ["filter.condition.equals is NaN"]),
    (AllOf(()), SCHEMA, ["filter.all.filters is empty"]),
    (Not(AnyOf(())), SCHEMA, ["filter.not.any.filters is empty"]),
    (AllOf((OK, AnyOf((OK, field("nope").equals(1))))), SCHEMA,
     ["filter.all.filters[1].any.filters[1].condition.field names nope"]),
    (Not(field("width").prefix("a")), SCHEMA, ["filter.not.condition.prefix tests text"]),
    (AnyOf(tuple(field("width").equals(i) for i in range(65))), SCHEMA,
     ["filter has 65 conditions, at most 64", "any_of"]),
    (deep(9), SCHEMA, ["filter" + ".not" * 8 + " is nested 9 levels deep, at most 8"]),
    (field("width").is_in(list(range(1025))), SCHEMA,
     ["filter has 1025 values", "at most 1024"]),
]  # fmt: skip


@pytest.mark.parametrize(("filter", "schema", "words"), BAD)
def test_bad_filters_say_where_and_what(
    filter: Filter, schema: FieldSchema, words: list[str]
) -> None:
    with pytest.raises(RequestError) as caught:
        check_shape(filter, Limits())
        check(filter, schema)
    assert caught.value.status is Status.INVALID_ARGUMENT
    message = caught.value.message
    assert message.startswith(words[0]), message
    for word in words:
        assert word in message, message


def test_limits_are_settings_and_the_path_is_the_callers() -> None:
    check_shape(deep(8), Limits())
    with pytest.raises(RequestError, match=r"^queries\[2\]\.filter\.not\.not is nested 3 levels"):
        check_shape(deep(3), Limits(max_filter_depth=2), path="queries[2].filter")
    with pytest.raises(RequestError, match="2 conditions, at most 1"):
        check_shape(OK & OK, Limits(max_filter_conditions=1))


# --- the mask cache --------------------------------------------------------------------


def test_masks_are_cached_per_version_and_filter(built: Built) -> None:
    masks = FilterMasks(max_entries=2)
    name = built.version.name
    first = masks.mask(name, field("width") >= 1000, built.table, built.schema)
    assert masks.mask(name, field("width") >= 1000, built.table, built.schema) is first
    assert not first.flags.writeable
    other = masks.mask("v999999", field("width") >= 1000, built.table, built.schema)
    assert other is not first and np.array_equal(other, first)
    masks.mask(name, field("height") > 500, built.table, built.schema)
    assert len(masks) == 2  # the least recently used went
    assert masks.mask(name, field("width") >= 1000, built.table, built.schema) is not first
    # True == 1.0 in Python: the check still runs before the cache answers
    masks.mask(name, field("metadata.private").equals(True), built.table, built.schema)
    with pytest.raises(RequestError, match="send true or false"):
        masks.mask(name, field("metadata.private").equals(1.0), built.table, built.schema)


def test_masks_are_shared_safely_between_threads(built: Built) -> None:
    masks = FilterMasks(max_entries=4)
    filters = [field("metadata.year").equals(2012 + i) for i in range(8)]
    truth = [row_mask(check(f, built.schema), built.table) for f in filters]
    wrong: list[int] = []

    def work(seed: int) -> None:
        rng = np.random.default_rng(seed)
        for _ in range(200):
            i = int(rng.integers(len(filters)))
            got = masks.mask(built.version.name, filters[i], built.table, built.schema)
            if not np.array_equal(got, truth[i]):
                wrong.append(i)

    threads = [threading.Thread(target=work, args=(seed,)) for seed in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not wrong and len(masks) <= 4


# --- --add, and versions from before filters -------------------------------------------


def test_add_keeps_the_fields_of_old_rows_and_types_new_ones(tmp_path: Path) -> None:
    shards, out = tmp_path / "shards", tmp_path / "index"
    first = make_items(700, seed=4)
    write_items(shards, first, run=1, seed=4)
    parent = run_build(BuildConfig(shards, out, index_factory="IVF8,Flat", eval_queries=20))
    # run 2: new items with a new key, one item changed, one deleted
    new = make_items(100, seed=5, first=700, run=2)
    new = [
        Item(it.uri, it.caption, it.width, it.height, {**(it.metadata or {}), "lens": "35mm"}, 2)
        for it in new
    ]
    changed = Item(first[10].uri, "changed", 10, 20, {"year": 1999, "lens": "50mm"}, 2)
    write_items(shards, [*new, changed], run=2, seed=5)
    manifest = read_manifest(shards)
    assert manifest is not None
    gone = first[20].uri
    deletion = pa.table({"id": [item_id(gone)], "uri": [gone]}, schema=DELETIONS_SCHEMA)
    entry = write_shard_file(shards, FileKind.DELETIONS, manifest.next_seq, deletion, FORMAT, 2)
    write_manifest(shards, manifest.with_file(entry))

    result = run_build(BuildConfig(shards, out, add=True, eval_queries=20))

    assert (
        result.kind is BuildKind.APPENDED
        and result.manifest.parent_version == parent.manifest.version
    )
    items = {item_id(it.uri): it for it in [*first, *new, changed]}
    built = load(result.path, items)
    m = built.version.manifest
    assert m.rows == 700 + 101 and m.count == 700 + 101 - 2
    assert FieldInfo("metadata.lens", S) in m.fields
    ids = np.asarray(built.version.ids)
    removed = np.flatnonzero(ids == REMOVED)
    assert set(removed) == {10, 20}
    rows = built.table.to_pylist()
    assert all(value is None for r in removed for value in rows[r].values())
    for r in np.flatnonzero(ids != REMOVED):
        item = items[int(ids[r])]
        assert rows[r]["uri"] == item.uri and rows[r]["width"] == item.width
        assert rows[r]["embedded_at"] == embedded(item)
        assert rows[r]["metadata.year"] == (meta(item, "year") if has(item, "year") else None)
        assert rows[r]["metadata.tags"] == (meta(item, "tags") if has(item, "tags") else None)
    # filters see the old rows as before and the new ones as they are now
    for _, filter, wanted in CASES:
        mask = row_mask(check(filter, built.schema), built.table)
        assert set(np.flatnonzero(mask)) == expected_rows(built, wanted)
    new_rows = row_mask(check(field("embedded_at") >= "2024-01-01", built.schema), built.table)
    assert set(np.flatnonzero(new_rows)) == set(range(700, 801))
    lens = row_mask(check(field("metadata.lens").equals("50mm"), built.schema), built.table)
    assert list(np.flatnonzero(lens)) == [800]
    none_of = row_mask(check(field("metadata.year").not_in([1999]), built.schema), built.table)
    assert not none_of[removed].any(), "a removed row passed a filter"


def test_a_version_from_before_filters_loads_without_fields(built: Built, tmp_path: Path) -> None:
    old = tmp_path / "v000001"
    old.mkdir()
    for path in built.version.path.iterdir():
        if path.name not in (FIELDS_FILE, MANIFEST_FILE):
            (old / path.name).write_bytes(path.read_bytes())
    raw = json.loads(built.version.manifest.to_json())
    del raw["fields"], raw["unfilterable"], raw["files"][FIELDS_FILE]
    (old / MANIFEST_FILE).write_text(json.dumps(raw))

    version = IndexVersion(old)
    assert version.manifest.fields == [] and version.manifest.unfilterable == {}
    table = read_fields(old, rows=version.manifest.rows)
    assert table.num_columns == 0
    with pytest.raises(RequestError, match="built before filters"):
        FilterMasks().mask(version.name, OK, table, FieldSchema.of(version.manifest))


def test_a_fields_file_of_another_length_is_refused(built: Built) -> None:
    with pytest.raises(ValueError, match="expected 7"):
        read_fields(built.version.path, rows=7)
    assert read_fields(built.version.path, columns=["uri"]).column_names == ["uri"]


# --- real embeds -----------------------------------------------------------------------


def test_fields_of_a_real_embedded_collection(
    tmp_path: Path, photos: dict[str, Image.Image], tiny_checkpoint: Path
) -> None:
    images = tmp_path / "images"
    sizes = {}
    for i, (name, photo) in enumerate(sorted(photos.items())):
        folder = images / ("2023" if i % 2 else "2024")
        folder.mkdir(parents=True, exist_ok=True)
        photo.save(folder / f"{name}.jpg", quality=90)
        sizes[f"{folder.name}/{name}.jpg"] = photo.size
        sidecar = {"camera": {"model": f"M{i % 2}"}, "tags": [name], "shot": f"2020-0{i + 1}-01"}
        (folder / f"{name}.json").write_text(json.dumps(sidecar))
    model = ModelSpec(TINY, str(tiny_checkpoint), device="cpu")
    run_embed(EmbedConfig(SourceSpec(str(images)), tmp_path / "shards", model, quiet=True))
    result = run_build(BuildConfig(tmp_path / "shards", tmp_path / "index", eval_queries=5))

    shards = read_manifest(tmp_path / "shards")
    assert shards is not None
    started = parse_date(shards.runs[0].started)
    table = read_fields(result.path, rows=result.manifest.rows)
    schema = FieldSchema.of(result.manifest)
    assert schema.get("metadata.shot") == FieldInfo("metadata.shot", D)
    assert schema.get("metadata.tags") == FieldInfo("metadata.tags", S, list=True)
    for row in table.to_pylist():
        relative = row["uri"].split("/images/")[-1]
        assert (row["width"], row["height"]) == sizes[relative]
        assert row["embedded_at"] == started
        assert row["metadata.tags"] == [Path(relative).stem]
    in_2023 = row_mask(check(field("uri").prefix(str(images / "2023")), schema), table)
    expected = [r for r, row in enumerate(table.to_pylist()) if "/2023/" in row["uri"]]
    assert list(np.flatnonzero(in_2023)) == expected and expected
    early = row_mask(check(field("metadata.shot") < "2020-03-01", schema), table)
    assert early.sum() == 2
