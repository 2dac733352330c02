"""Which metadata keys filters can test, and as what: the type-inference rule.

Each row's metadata is a JSON object; nested objects flatten to dotted paths
(`{"camera": {"model": "X"}}` is `metadata.camera.model`). Over every live row of a
version, the values of one key decide its type:

    every value a number (int or float)                    number
    every value true or false                              bool
    every value text in ISO 8601 form (parse_date)         date
    every value text, some not dates                       string
    every value a list of one of those kinds               a list field of that kind
      (null items are dropped; empty lists fit any kind)
    null, or the key absent                                no value in that row

Anything else leaves the key unfilterable, listed with the reason: different kinds in
different rows (numbers in some, text in others; a list in some, a scalar in others;
an object in some, a scalar in others), lists holding lists or objects, lists mixing
kinds, only nulls or only empty lists, and keys that are empty or hold a '.' (which a
filter would read as nesting). An object is not a field itself; its keys are. Metadata
that is not a JSON object has no keys, and is reported under `metadata`.

At most `max_fields` keys become fields: those with values in the most rows (ties by
name); the rest are unfilterable for that reason. Past `max_tracked` distinct keys, new
ones are not tracked at all, so a collection with a fresh key per row costs bounded memory.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from enum import StrEnum

from clipsearch.index.fields import BUILTIN_FIELDS, FieldSchema, parse_date
from clipsearch.types import FieldInfo, FieldType

MAX_METADATA_FIELDS = 256
MAX_TRACKED_KEYS = 65_536
MAX_UNFILTERABLE_LISTED = 256
METADATA = "metadata"
MORE_KEYS = "metadata.*"  # the unfilterable entry that counts the keys not listed


class Kind(StrEnum):
    """What one value is; the words appear in the reasons."""

    NUMBER = "numbers"
    BOOL = "true/false"
    TEXT = "text"
    OBJECT = "objects"
    NUMBER_LIST = "lists of numbers"
    BOOL_LIST = "lists of true/false"
    TEXT_LIST = "lists of text"
    EMPTY_LIST = "empty lists"
    NESTED_LIST = "lists holding lists or objects"
    MIXED_LIST = "lists mixing kinds"


# The type a kind makes; None: text, a date when every value is one.
_SCALAR_TYPES = {Kind.NUMBER: FieldType.NUMBER, Kind.BOOL: FieldType.BOOL, Kind.TEXT: None}
_LIST_OF = {Kind.NUMBER: Kind.NUMBER_LIST, Kind.BOOL: Kind.BOOL_LIST, Kind.TEXT: Kind.TEXT_LIST}
_LIST_TYPES = {
    Kind.NUMBER_LIST: FieldType.NUMBER,
    Kind.BOOL_LIST: FieldType.BOOL,
    Kind.TEXT_LIST: None,
}


def kind_of(value: object) -> Kind | None:
    """None for null. bool is tested before int: in Python, True is an int."""
    if value is None:
        return None
    if isinstance(value, bool):
        return Kind.BOOL
    if isinstance(value, int | float):
        return Kind.NUMBER
    if isinstance(value, str):
        return Kind.TEXT
    if isinstance(value, dict):
        return Kind.OBJECT
    if isinstance(value, list):
        items = {kind for item in value if (kind := kind_of(item)) is not None}
        if not items:
            return Kind.EMPTY_LIST
        if not items <= _LIST_OF.keys():
            return Kind.NESTED_LIST
        if len(items) > 1:
            return Kind.MIXED_LIST
        return _LIST_OF[items.pop()]
    raise TypeError(f"not a JSON value: {type(value).__name__}")


def parse_metadata(text: str | None) -> dict[str, object] | None:
    """A row's metadata as a JSON object; None when absent, not JSON or not an object."""
    if not text:
        return None
    try:
        value = json.loads(text)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def bad_key(key: str) -> str | None:
    """Why a key cannot name a field, or None."""
    if not key:
        return "the key is empty"
    if "." in key:
        return "the key holds a '.', which filters read as nesting"
    return None


@dataclass
class _Seen:
    """What one key held over the rows so far."""

    first_row: dict[Kind, int] = field(default_factory=dict)
    counts: dict[Kind, int] = field(default_factory=dict)
    rows: int = 0  # rows with a value
    dates: bool = True  # every text value (or list item) so far is an ISO 8601 date
    bad_key: str | None = None

    def add(self, row: int, value: object) -> None:
        kind = kind_of(value)
        if kind is None:
            return
        self.rows += 1
        self.counts[kind] = self.counts.get(kind, 0) + 1
        self.first_row.setdefault(kind, row)
        if self.dates and isinstance(value, str):
            self.dates = parse_date(value) is not None
        elif self.dates and kind is Kind.TEXT_LIST and isinstance(value, list):
            self.dates = all(parse_date(v) is not None for v in value if isinstance(v, str))


def decide(name: str, seen: _Seen) -> FieldInfo | str | None:
    """The field a key makes, why it makes none (a reason), or None for a pure object."""
    if seen.bad_key:
        return seen.bad_key
    kinds = set(seen.counts)
    if kinds == {Kind.OBJECT}:
        return None
    if not kinds:
        return "it holds only nulls: no type to infer"
    if kinds == {Kind.EMPTY_LIST}:
        return "it holds only empty lists: no type to infer"
    if bad := kinds & {Kind.NESTED_LIST, Kind.MIXED_LIST}:
        kind = min(bad, key=lambda k: seen.first_row[k])
        return (
            f"it holds {kind} (first at row {seen.first_row[kind]}): "
            "only lists of numbers, true/false or text can be filtered"
        )
    if len(kinds) == 1 and (only := next(iter(kinds))) in _SCALAR_TYPES:
        return FieldInfo(name, _SCALAR_TYPES[only] or _text_type(seen))
    lists = kinds - {Kind.EMPTY_LIST}  # an empty list fits a list of any kind
    if len(lists) == 1 and (only := next(iter(lists))) in _LIST_TYPES:
        return FieldInfo(name, _LIST_TYPES[only] or _text_type(seen), list=True)
    return "its values differ in kind: " + ", ".join(
        f"{kind} in {_rows(seen.counts[kind])} (first: row {seen.first_row[kind]})"
        for kind in sorted(seen.counts, key=lambda k: seen.first_row[k])
    )


def _rows(count: int) -> str:
    return "1 row" if count == 1 else f"{count} rows"


def _text_type(seen: _Seen) -> FieldType:
    return FieldType.DATE if seen.dates else FieldType.STRING


class SchemaInference:
    """Feeds on rows' metadata one at a time; `schema()` applies the rule to what it saw."""

    def __init__(
        self, max_fields: int = MAX_METADATA_FIELDS, max_tracked: int = MAX_TRACKED_KEYS
    ) -> None:
        self._max_fields = max_fields
        self._max_tracked = max_tracked
        self._keys: dict[str, _Seen] = {}
        self._untracked = 0  # sightings of keys past max_tracked
        self._not_objects = 0
        self._first_not_object = -1

    def add(self, row: int, metadata: str | None) -> None:
        value = parse_metadata(metadata)
        if value is None:
            if metadata:  # absent metadata is fine; text that is no JSON object is not
                self._not_objects += 1
                if self._first_not_object < 0:
                    self._first_not_object = row
            return
        self._add_object(row, METADATA, value)

    def _add_object(self, row: int, prefix: str, value: dict[str, object]) -> None:
        for key, item in value.items():
            path = f"{prefix}.{key}"
            seen = self._seen(path)
            if seen is None:
                continue
            if why := bad_key(key):
                seen.bad_key = why
                continue
            seen.add(row, item)
            if isinstance(item, dict):
                self._add_object(row, path, item)

    def _seen(self, path: str) -> _Seen | None:
        seen = self._keys.get(path)
        if seen is None:
            if len(self._keys) >= self._max_tracked:
                self._untracked += 1
                return None
            seen = self._keys[path] = _Seen()
        return seen

    def schema(self) -> FieldSchema:
        fields: list[FieldInfo] = []
        reasons: dict[str, tuple[int, str]] = {}  # name -> (rows with a value, why)
        for name, seen in self._keys.items():
            decided = decide(name, seen)
            if isinstance(decided, FieldInfo):
                fields.append(decided)
            elif decided is not None:
                reasons[name] = (seen.rows, decided)
        fields.sort(key=lambda f: (-self._keys[f.name].rows, f.name))
        kept, over = fields[: self._max_fields], fields[self._max_fields :]
        for info in over:
            reasons[info.name] = (
                self._keys[info.name].rows,
                f"only the {self._max_fields} metadata keys with values in the most rows "
                f"can be filtered, and this one has values in {_rows(self._keys[info.name].rows)}",
            )
        unfilterable = self._listed(reasons)
        kept.sort(key=lambda f: f.name)
        return FieldSchema((*BUILTIN_FIELDS, *kept), unfilterable)

    def _listed(self, reasons: dict[str, tuple[int, str]]) -> dict[str, str]:
        """The reasons, capped like the fields so the manifest stays small."""
        ranked = sorted(reasons, key=lambda name: (-reasons[name][0], name))
        listed = {name: reasons[name][1] for name in ranked[:MAX_UNFILTERABLE_LISTED]}
        if self._not_objects:
            listed[METADATA] = (
                f"{self._not_objects} rows hold metadata that is not a JSON object "
                f"(first: row {self._first_not_object}); only objects' keys can be filtered"
            )
        more = len(ranked) - MAX_UNFILTERABLE_LISTED
        if more > 0:
            listed[MORE_KEYS] = f"{more} more keys cannot be filtered (not listed)"
        if self._untracked:
            listed[MORE_KEYS] = (
                f"{max(more, 0)} more keys cannot be filtered (not listed), and keys past "
                f"the first {self._max_tracked} distinct ones were not tracked"
            )
        return listed
