"""Typed metadata filters: conditions on an item's fields, combined with all / any / not.

Build them with `field`:

    from clipsearch.filters import field

    wanted = (field("metadata.year") >= 2023) & field("metadata.tags").equals("holiday")
    wanted = field("uri").prefix("/photos/2023/") | ~field("metadata.private").exists()

A field is a built-in one (uri, caption, width, height, embedded_at) or a metadata key
as `metadata.KEY`, nested keys by dotted path. Values are text, numbers or truth values;
dates are ISO 8601 text ("2023-06-01", "2023-06-01T12:00:00Z"). Filters are plain frozen
data: hashable, comparable, and the same on the client and the server.
"""

from __future__ import annotations

from dataclasses import dataclass

Scalar = str | float | bool


class _Combinable:
    """`a & b`, `a | b` and `~a` on any filter."""

    def __and__(self, other: Filter) -> AllOf:
        return AllOf((self, other))  # type: ignore[arg-type]

    def __or__(self, other: Filter) -> AnyOf:
        return AnyOf((self, other))  # type: ignore[arg-type]

    def __invert__(self) -> Not:
        return Not(self)  # type: ignore[arg-type]


# --- tests of one field ----------------------------------------------------------------


@dataclass(frozen=True)
class Equals:
    """Equal to the value; a list field holds it."""

    value: Scalar


@dataclass(frozen=True)
class In:
    """Equal to one of the values; a list field holds one of them."""

    values: tuple[Scalar, ...]


@dataclass(frozen=True)
class NotIn:
    """Equal to none of the values; a list field holds none of them. Items without the
    field pass."""

    values: tuple[Scalar, ...]


@dataclass(frozen=True)
class Between:
    """Within the bounds that are set (at least one): numbers, or dates as ISO text."""

    gt: Scalar | None = None
    gte: Scalar | None = None
    lt: Scalar | None = None
    lte: Scalar | None = None


@dataclass(frozen=True)
class Exists:
    """The field has a value (present=False: it has none)."""

    present: bool = True


@dataclass(frozen=True)
class Prefix:
    """A text field starts with `text`."""

    text: str


Test = Equals | In | NotIn | Between | Exists | Prefix


# --- filters ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Condition(_Combinable):
    field: str
    test: Test


@dataclass(frozen=True)
class AllOf(_Combinable):
    filters: tuple[Filter, ...]


@dataclass(frozen=True)
class AnyOf(_Combinable):
    filters: tuple[Filter, ...]


@dataclass(frozen=True)
class Not(_Combinable):
    filter: Filter


Filter = Condition | AllOf | AnyOf | Not


@dataclass(frozen=True)
class Field:
    """A builder of conditions on one field."""

    name: str

    def equals(self, value: Scalar) -> Condition:
        return Condition(self.name, Equals(value))

    def is_in(self, values: tuple[Scalar, ...] | list[Scalar]) -> Condition:
        return Condition(self.name, In(tuple(values)))

    def not_in(self, values: tuple[Scalar, ...] | list[Scalar]) -> Condition:
        return Condition(self.name, NotIn(tuple(values)))

    def between(
        self,
        gte: Scalar | None = None,
        lt: Scalar | None = None,
        *,
        gt: Scalar | None = None,
        lte: Scalar | None = None,
    ) -> Condition:
        return Condition(self.name, Between(gt=gt, gte=gte, lt=lt, lte=lte))

    def exists(self) -> Condition:
        return Condition(self.name, Exists(True))

    def missing(self) -> Condition:
        return Condition(self.name, Exists(False))

    def prefix(self, text: str) -> Condition:
        return Condition(self.name, Prefix(text))

    def __gt__(self, value: Scalar) -> Condition:
        return Condition(self.name, Between(gt=value))

    def __ge__(self, value: Scalar) -> Condition:
        return Condition(self.name, Between(gte=value))

    def __lt__(self, value: Scalar) -> Condition:
        return Condition(self.name, Between(lt=value))

    def __le__(self, value: Scalar) -> Condition:
        return Condition(self.name, Between(lte=value))


def field(name: str) -> Field:
    return Field(name)
