"""The rules a metadata filter must follow, and the checked form that evaluation runs.

Two steps, both pure:

- `check_shape(filter, limits, path)` needs nothing but the filter: its size and nesting
  against `Limits`, no empty all/any, in-lists or ranges, no NaN. The request parser calls
  it, so a malformed filter fails before any work is queued.
- `check(filter, schema, path)` holds it against a version's fields: every field exists,
  every value has its field's type, dates parse. It returns a `Checked` tree with typed
  values (dates as UTC datetimes) for filtering.py to evaluate.

Each message names the place in the request's terms (the proto's field names):
`filter.all.filters[1].condition.range.gte is text ('x'), but metadata.year holds numbers`.
"""

from __future__ import annotations

import difflib
import math
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from clipsearch.filters import (
    AllOf,
    Between,
    Condition,
    Equals,
    Exists,
    Filter,
    In,
    Not,
    NotIn,
    Prefix,
    Scalar,
    Test,
)
from clipsearch.index.fields import METADATA_PREFIX, FieldSchema, parse_date
from clipsearch.server.core.calls import invalid
from clipsearch.server.core.config import Limits
from clipsearch.types import FieldInfo, FieldType

TypedValue = str | float | bool | datetime
LISTED_FIELDS = 12  # an unknown field's message lists every field up to this many

_TEST_NAMES = {  # as Condition's oneof names them in the proto
    Equals: "equals",
    In: "any_of",
    NotIn: "none_of",
    Between: "range",
    Exists: "exists",
    Prefix: "prefix",
}
_HOLDS = {
    FieldType.STRING: "text",
    FieldType.NUMBER: "numbers",
    FieldType.BOOL: "true/false",
    FieldType.DATE: "dates",
}


class Compare(StrEnum):
    """A range bound, named as its pyarrow.compute function."""

    GT = "greater"
    GTE = "greater_equal"
    LT = "less"
    LTE = "less_equal"


@dataclass(frozen=True)
class Match:
    """equals / any_of (one of `values`), or none_of (`negate`: none of them; rows
    without the field pass). For a list field: it holds one (none) of them."""

    field: FieldInfo
    values: tuple[TypedValue, ...]
    negate: bool = False


@dataclass(frozen=True)
class InRange:
    """Every bound holds (for a list field: for one of its values)."""

    field: FieldInfo
    bounds: tuple[tuple[Compare, TypedValue], ...]


@dataclass(frozen=True)
class Present:
    field: FieldInfo
    present: bool


@dataclass(frozen=True)
class StartsWith:
    field: FieldInfo
    text: str


@dataclass(frozen=True)
class Every:
    parts: tuple[Checked, ...]


@dataclass(frozen=True)
class Some:
    parts: tuple[Checked, ...]


@dataclass(frozen=True)
class Negated:
    part: Checked


Checked = Match | InRange | Present | StartsWith | Every | Some | Negated


# --- the shape, without a version ------------------------------------------------------


@dataclass
class _Tally:
    conditions: int = 0
    values: int = 0


def check_shape(filter: Filter, limits: Limits, path: str = "filter") -> None:
    """Refuse filters too large or too deep for `limits`, and malformed ones."""
    tally = _Tally()
    _shape(filter, limits, path, 1, tally)
    if tally.conditions > limits.max_filter_conditions:
        raise invalid(
            f"{path} has {tally.conditions} conditions, at most "
            f"{limits.max_filter_conditions}: test many values of one field with one any_of"
        )
    if tally.values > limits.max_filter_values:
        raise invalid(
            f"{path} has {tally.values} values in its lists, at most {limits.max_filter_values}"
        )


def _shape(filter: Filter, limits: Limits, path: str, depth: int, tally: _Tally) -> None:
    if depth > limits.max_filter_depth:
        raise invalid(
            f"{path} is nested {depth} levels deep, at most {limits.max_filter_depth}: "
            "flatten the all/any/not"
        )
    if isinstance(filter, Condition):
        tally.conditions += 1
        _condition_shape(filter, f"{path}.condition", tally)
    elif isinstance(filter, Not):
        _shape(filter.filter, limits, f"{path}.not", depth + 1, tally)
    else:
        name = "all" if isinstance(filter, AllOf) else "any"
        if not filter.filters:
            raise invalid(f"{path}.{name}.filters is empty: give at least one filter")
        for i, part in enumerate(filter.filters):
            _shape(part, limits, f"{path}.{name}.filters[{i}]", depth + 1, tally)


def _condition_shape(condition: Condition, path: str, tally: _Tally) -> None:
    if not condition.field:
        raise invalid(f"{path}.field is empty: name a field, e.g. uri or metadata.year")
    test = condition.test
    where = f"{path}.{_TEST_NAMES[type(test)]}"
    if isinstance(test, In | NotIn):
        if not test.values:
            raise invalid(f"{where} is empty: give at least one value")
        tally.values += len(test.values)
    if isinstance(test, Between) and not any(v is not None for _, v in _bounds(test)):
        raise invalid(f"{where} has no bounds: set at least one of gt, gte, lt, lte")
    for name, value in _values(test, where):
        if isinstance(value, float) and math.isnan(value):
            raise invalid(f"{name} is NaN, which equals nothing: send a number")


def _bounds(test: Between) -> list[tuple[Compare, Scalar | None]]:
    return [
        (Compare.GT, test.gt),
        (Compare.GTE, test.gte),
        (Compare.LT, test.lt),
        (Compare.LTE, test.lte),
    ]


_BOUND_NAMES = {Compare.GT: "gt", Compare.GTE: "gte", Compare.LT: "lt", Compare.LTE: "lte"}


def _values(test: Test, where: str) -> list[tuple[str, Scalar]]:
    """Each value of a test with the path that names it."""
    if isinstance(test, Equals):
        return [(where, test.value)]
    if isinstance(test, In | NotIn):
        return [(f"{where}.values[{i}]", v) for i, v in enumerate(test.values)]
    if isinstance(test, Between):
        return [(f"{where}.{_BOUND_NAMES[c]}", v) for c, v in _bounds(test) if v is not None]
    return []


# --- against a version's fields --------------------------------------------------------


def check(filter: Filter, schema: FieldSchema, path: str = "filter") -> Checked:
    """The filter with its fields resolved and its values typed; refuses what the version
    cannot answer (unknown fields, values of the wrong type, malformed dates)."""
    if isinstance(filter, Condition):
        return _condition(filter, schema, f"{path}.condition")
    if isinstance(filter, Not):
        return Negated(check(filter.filter, schema, f"{path}.not"))
    name = "all" if isinstance(filter, AllOf) else "any"
    parts = tuple(
        check(part, schema, f"{path}.{name}.filters[{i}]") for i, part in enumerate(filter.filters)
    )
    return Every(parts) if isinstance(filter, AllOf) else Some(parts)


def _condition(condition: Condition, schema: FieldSchema, path: str) -> Checked:
    info = _field(condition.field, schema, f"{path}.field")
    test = condition.test
    where = f"{path}.{_TEST_NAMES[type(test)]}"
    if isinstance(test, Exists):
        return Present(info, test.present)
    if isinstance(test, Prefix):
        if info.type is not FieldType.STRING:
            hint = "use range" if info.type in (FieldType.NUMBER, FieldType.DATE) else "use equals"
            raise invalid(f"{where} tests text, but {_describe(info)}: {hint}")
        return StartsWith(info, test.text)
    if isinstance(test, Between):
        if info.type not in (FieldType.NUMBER, FieldType.DATE):
            raise invalid(
                f"{where} tests numbers and dates, but {_describe(info)}: use equals or any_of"
            )
        bounds = tuple(
            (compare, _typed(info, value, f"{where}.{_BOUND_NAMES[compare]}"))
            for compare, value in _bounds(test)
            if value is not None
        )
        return InRange(info, bounds)
    typed = tuple(dict.fromkeys(_typed(info, v, name) for name, v in _values(test, where)))
    return Match(info, typed, negate=isinstance(test, NotIn))


def _field(name: str, schema: FieldSchema, where: str) -> FieldInfo:
    info = schema.get(name)
    if info is not None:
        return info
    if name in schema.unfilterable:
        raise invalid(f"{where}: {name} cannot be filtered, {schema.unfilterable[name]}")
    if not schema.fields:
        raise invalid(
            f"{where} names {name}, but this index version has no filterable fields: it was "
            "built before filters; rebuild it with `clipsearch build`"
        )
    raise invalid(
        f"{where} names {name}, which this index does not have; " + _nearest(name, schema)
    )


def _nearest(name: str, schema: FieldSchema) -> str:
    names = [f.name for f in schema.fields]
    if METADATA_PREFIX + name in names:
        return f"did you mean {METADATA_PREFIX}{name}? metadata keys are named metadata.KEY"
    if len(names) <= LISTED_FIELDS:
        return "its fields are " + ", ".join(names)
    # Matched on the keys alone: the shared "metadata." would make every name look close.
    keys = {n.removeprefix(METADATA_PREFIX): n for n in names}
    close = [keys[k] for k in difflib.get_close_matches(name.removeprefix(METADATA_PREFIX), keys)]
    if close:
        return "did you mean " + " or ".join(close) + "?"
    return f"it has {len(names)} fields (GetIndexInfo lists them), e.g. " + ", ".join(names[:5])


def _typed(info: FieldInfo, value: Scalar, where: str) -> TypedValue:
    """`value` as the field's type compares it, or why it cannot be."""
    kind = info.type
    if kind is FieldType.NUMBER and isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if kind is FieldType.BOOL and isinstance(value, bool):
        return value
    if kind is FieldType.STRING and isinstance(value, str):
        return value
    if kind is FieldType.DATE and isinstance(value, str):
        moment = parse_date(value)
        if moment is None:
            raise invalid(
                f"{where} is {value!r}, not an ISO 8601 date: write 2023-06-01 or "
                "2023-06-01T12:30:00Z"
            )
        return moment
    want = {
        FieldType.NUMBER: "a number",
        FieldType.BOOL: "true or false",
        FieldType.STRING: "text",
        FieldType.DATE: "a date as ISO 8601 text",
    }[kind]
    raise invalid(f"{where} is {_shown(value)}, but {_describe(info)}: send {want}")


def _describe(info: FieldInfo) -> str:
    holds = _HOLDS[info.type]
    return f"{info.name} holds " + (f"lists of {holds}" if info.list else holds)


def _shown(value: Scalar) -> str:
    if isinstance(value, bool):
        return f"a truth value ({str(value).lower()})"
    if isinstance(value, str):
        return f"text ({value!r})"
    return f"a number ({value:g})"
