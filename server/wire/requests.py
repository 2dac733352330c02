"""Protobuf requests to typed queries, checked by the shared rules (core/validate.py);
every problem names the field to fix in the message's own terms."""

from __future__ import annotations

from clipsearch.server.core import validate
from clipsearch.server.core.calls import invalid
from clipsearch.server.core.config import Limits
from clipsearch.types import (
    ClassifyQuery,
    EmbedQuery,
    ImageQuery,
    ImageUrlQuery,
    ItemQuery,
    Query,
    SearchOptions,
    SearchQuery,
    TextQuery,
    VectorQuery,
)
from clipsearch.v1 import search_pb2 as pb


def parse_search(request: pb.SearchRequest, dim: int, limits: Limits, at: str = "") -> SearchQuery:
    return SearchQuery(_parse_query(request, dim, limits, at), _parse_options(request, limits, at))


def parse_batch(request: pb.BatchSearchRequest, dim: int, limits: Limits) -> list[SearchQuery]:
    validate.batch_size(len(request.queries), "queries", limits)
    return [parse_search(q, dim, limits, f"queries[{i}].") for i, q in enumerate(request.queries)]


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
    return SearchOptions(
        top_k=validate.top_k(request.top_k, f"{at}top_k", limits),
        nprobe=validate.effort(effort.nprobe, f"{at}effort.nprobe", limits),
        candidates=validate.effort(
            effort.rerank_candidates, f"{at}effort.rerank_candidates", limits
        ),
        with_metadata=not request.omit_metadata,
    )


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
