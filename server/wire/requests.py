"""Protobuf requests to typed queries, checked by the shared rules (core/validate.py);
every problem names the field to fix in the message's own terms."""

from __future__ import annotations

import math

from clipsearch.filters import (
    AllOf,
    AnyOf,
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
)
from clipsearch.server.core import validate
from clipsearch.server.core.calls import invalid
from clipsearch.server.core.config import Limits
from clipsearch.server.core.filter_check import check_shape
from clipsearch.types import (
    DEFAULT_COLLAPSE_THRESHOLD,
    ClassifyQuery,
    Collapse,
    EmbedQuery,
    ImageQuery,
    ImageUrlQuery,
    ItemQuery,
    Query,
    SearchOptions,
    SearchQuery,
    Target,
    TextQuery,
    VectorQuery,
)
from clipsearch.v1 import search_pb2 as pb


def parse_search(request: pb.SearchRequest, dim: int, limits: Limits, at: str = "") -> SearchQuery:
    return SearchQuery(_parse_query(request, dim, limits, at), _parse_options(request, limits, at))


def parse_batch(
    request: pb.BatchSearchRequest, dim: int, limits: Limits, members: list[int] | None = None
) -> list[SearchQuery]:
    """The batch's queries, or those at `members` (the ones of one index)."""
    validate.batch_size(len(request.queries), "queries", limits)
    chosen = range(len(request.queries)) if members is None else members
    return [parse_search(request.queries[i], dim, limits, f"queries[{i}].") for i in chosen]


def _parse_query(request: pb.SearchRequest, dim: int, limits: Limits, at: str) -> Query:
    kind = request.WhichOneof("query")
    if kind is None:
        raise invalid(f"{at}query: set exactly one of text, image, image_url, embedding or item_id")
    if kind == "text":
        return TextQuery(validate.text(request.text, f"{at}text", limits))
    if kind == "image":
        return ImageQuery(validate.image(request.image, f"{at}image"))
    if kind == "image_url":
        if not request.image_url.strip():
            raise invalid(f"{at}image_url is empty")
        return ImageUrlQuery(request.image_url.strip())
    if kind == "embedding":
        return VectorQuery(validate.unit_vector(request.embedding.values, dim, f"{at}embedding"))
    return ItemQuery(request.item_id)


def _parse_options(request: pb.SearchRequest, limits: Limits, at: str) -> SearchOptions:
    effort = request.effort
    filter_ = None
    if request.HasField("filter"):
        filter_ = parse_filter(request.filter, f"{at}filter")
        check_shape(filter_, limits, f"{at}filter")
    return SearchOptions(
        top_k=validate.top_k(request.top_k, f"{at}top_k", limits),
        nprobe=validate.effort(effort.nprobe, f"{at}effort.nprobe", limits),
        candidates=validate.effort(
            effort.rerank_candidates, f"{at}effort.rerank_candidates", limits
        ),
        with_metadata=not request.omit_metadata,
        filter=filter_,
        min_score=(
            validate.min_score(request.min_score, f"{at}min_score")
            if request.HasField("min_score")
            else None
        ),
        collapse=_collapse(request, at) if request.HasField("collapse") else None,
        target=TARGETS[request.target],
        page_token=request.page_token,
        index=request.index,
    )


TARGETS = {
    pb.TARGET_UNSPECIFIED: Target.IMAGES,
    pb.TARGET_IMAGES: Target.IMAGES,
    pb.TARGET_CAPTIONS: Target.CAPTIONS,
}


def _collapse(request: pb.SearchRequest, at: str) -> Collapse:
    threshold = request.collapse.threshold or DEFAULT_COLLAPSE_THRESHOLD
    if not 0.0 < threshold <= 1.0:
        raise invalid(f"{at}collapse.threshold is {threshold:g}: use a cosine similarity in (0, 1]")
    return Collapse(threshold, request.collapse.with_ids)


def parse_filter(message: pb.Filter, at: str) -> Filter:
    """A filter message to the typed filter, naming the path of anything malformed."""
    kind = message.WhichOneof("kind")
    if kind == "condition":
        return _condition(message.condition, f"{at}.condition")
    if kind in ("all", "any"):
        parts = getattr(message, kind).filters
        if not parts:
            raise invalid(f"{at}.{kind}.filters is empty: give at least one filter")
        children = tuple(
            parse_filter(part, f"{at}.{kind}.filters[{i}]") for i, part in enumerate(parts)
        )
        return AllOf(children) if kind == "all" else AnyOf(children)
    if kind == "not":
        return Not(parse_filter(getattr(message, "not"), f"{at}.not"))  # a Python keyword
    raise invalid(f"{at}: set one of condition, all, any or not")


def _condition(message: pb.Condition, at: str) -> Condition:
    name = message.field.strip()
    if not name:
        raise invalid(f"{at}.field is empty: name a field, e.g. uri or metadata.year")
    test = message.WhichOneof("test")
    if test == "equals":
        return Condition(name, Equals(_value(message.equals, f"{at}.equals")))
    if test in ("any_of", "none_of"):
        values = getattr(message, test).values
        if not values:
            raise invalid(f"{at}.{test}.values is empty: give at least one value")
        scalars = tuple(_value(v, f"{at}.{test}.values[{i}]") for i, v in enumerate(values))
        return Condition(name, In(scalars) if test == "any_of" else NotIn(scalars))
    if test == "range":
        bounds = {
            bound: _value(getattr(message.range, bound), f"{at}.range.{bound}")
            for bound in ("gt", "gte", "lt", "lte")
            if message.range.HasField(bound)
        }
        if not bounds:
            raise invalid(f"{at}.range: set at least one of gt, gte, lt, lte")
        return Condition(name, Between(**bounds))
    if test == "exists":
        return Condition(name, Exists(message.exists))
    if test == "prefix":
        return Condition(name, Prefix(message.prefix))
    raise invalid(f"{at}: set one test: equals, any_of, none_of, range, exists or prefix")


def _value(message: pb.Value, at: str) -> Scalar:
    kind = message.WhichOneof("kind")
    if kind is None:
        raise invalid(f"{at}: set one of string_value, number_value or bool_value")
    value: Scalar = getattr(message, kind)
    if isinstance(value, float) and not math.isfinite(value):
        raise invalid(f"{at} is {value}: use a finite number")
    return value


def parse_embed(request: pb.EmbedRequest, limits: Limits) -> EmbedQuery:
    validate.embed_inputs(len(request.texts) + len(request.images), limits)
    return EmbedQuery(
        tuple(validate.text(t, f"texts[{i}]", limits) for i, t in enumerate(request.texts)),
        tuple(validate.image(d, f"images[{i}]") for i, d in enumerate(request.images)),
    )


def parse_classify(request: pb.ClassifyRequest, limits: Limits) -> ClassifyQuery:
    if not request.image:
        raise invalid("image is empty: send the encoded image bytes to classify")
    return ClassifyQuery(
        bytes(request.image),
        validate.labels(tuple(request.labels), "labels", limits),
        validate.templates(tuple(request.templates), "templates", limits),
    )
