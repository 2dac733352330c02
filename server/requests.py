"""Protobuf requests to validated internal queries; every problem names the field to fix."""

from __future__ import annotations

import math

import numpy as np

from clipsearch.v1 import search_pb2 as pb
from server.config import Limits
from server.queries import (
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
    invalid,
)

DEFAULT_TOP_K = 10
DEFAULT_TEMPLATE = "a photo of a {}."


def parse_search(request: pb.SearchRequest, dim: int, limits: Limits, at: str = "") -> SearchQuery:
    return SearchQuery(_parse_query(request, dim, limits, at), _parse_options(request, limits, at))


def parse_batch(request: pb.BatchSearchRequest, dim: int, limits: Limits) -> list[SearchQuery]:
    count = len(request.queries)
    if count == 0:
        raise invalid("queries is empty: send at least one query")
    if count > limits.max_batch_queries:
        raise invalid(
            f"queries has {count} entries, at most {limits.max_batch_queries} per call: split it"
        )
    return [parse_search(q, dim, limits, f"queries[{i}].") for i, q in enumerate(request.queries)]


def _parse_query(request: pb.SearchRequest, dim: int, limits: Limits, at: str) -> Query:
    kind = request.WhichOneof("query")
    if kind is None:
        raise invalid(f"{at}query: set exactly one of text, image, image_url, embedding or item_id")
    if kind == "text":
        return TextQuery(_text(request.text, f"{at}text", limits))
    if kind == "image":
        if not request.image:
            raise invalid(f"{at}image is empty: send the encoded image bytes")
        return ImageQuery(request.image)
    if kind == "image_url":
        if not request.image_url.strip():
            raise invalid(f"{at}image_url is empty")
        return ImageUrlQuery(request.image_url.strip())
    if kind == "embedding":
        return VectorQuery(unit_vector(request.embedding.values, dim, f"{at}embedding"))
    return ItemQuery(request.item_id)


def _parse_options(request: pb.SearchRequest, limits: Limits, at: str) -> SearchOptions:
    top_k = request.top_k or DEFAULT_TOP_K
    if top_k > limits.max_top_k:
        raise invalid(f"{at}top_k is {top_k}: use 1 to {limits.max_top_k} (0 means 10)")
    effort = request.effort
    for name, value in (("nprobe", effort.nprobe), ("rerank_candidates", effort.rerank_candidates)):
        if value > limits.max_effort:
            raise invalid(f"{at}effort.{name} is {value}: use at most {limits.max_effort}")
    return SearchOptions(
        top_k=top_k,
        nprobe=effort.nprobe or None,
        candidates=effort.rerank_candidates or None,
        with_metadata=not request.omit_metadata,
    )


def _text(text: str, field: str, limits: Limits) -> str:
    if not text.strip():
        raise invalid(f"{field} is empty: describe the images you want, e.g. 'a red bicycle'")
    if len(text) > limits.max_text_chars:
        raise invalid(
            f"{field} has {len(text)} characters, at most {limits.max_text_chars} are accepted "
            "(the model reads only the first ~75 tokens anyway)"
        )
    return text


def unit_vector(values: object, dim: int, field: str) -> np.ndarray:
    """A query vector as float32 of unit length; refuses wrong sizes, NaN, inf and zero."""
    vector = np.asarray(values, dtype=np.float32)
    if vector.shape != (dim,):
        raise invalid(f"{field} has {vector.size} values; this index has dimension {dim}")
    if not np.isfinite(vector).all():
        raise invalid(f"{field} contains NaN or infinite values")
    norm = float(np.linalg.norm(vector))
    if norm == 0.0 or not math.isfinite(norm):
        raise invalid(f"{field} has zero length: it has no direction to search in")
    return vector / norm


def parse_embed(request: pb.EmbedRequest, limits: Limits) -> EmbedQuery:
    total = len(request.texts) + len(request.images)
    if total == 0:
        raise invalid("texts and images are both empty: send at least one input")
    if total > limits.max_embed_inputs:
        raise invalid(f"{total} inputs, at most {limits.max_embed_inputs} per call: split them")
    texts = tuple(_text(t, f"texts[{i}]", limits) for i, t in enumerate(request.texts))
    for i, image in enumerate(request.images):
        if not image:
            raise invalid(f"images[{i}] is empty: send the encoded image bytes")
    return EmbedQuery(texts, tuple(request.images))


def parse_classify(request: pb.ClassifyRequest, limits: Limits) -> ClassifyQuery:
    if not request.image:
        raise invalid("image is empty: send the encoded image bytes to classify")
    labels = tuple(_text(label, f"labels[{i}]", limits) for i, label in enumerate(request.labels))
    if len(labels) < 2:
        raise invalid(f"labels has {len(labels)} entries: give at least two to choose between")
    if len(labels) > limits.max_labels:
        raise invalid(f"labels has {len(labels)} entries, at most {limits.max_labels}")
    if len(set(labels)) != len(labels):
        raise invalid("labels has duplicates: give each label once")
    templates = tuple(request.templates) or (DEFAULT_TEMPLATE,)
    if len(templates) > limits.max_templates:
        raise invalid(f"templates has {len(templates)} entries, at most {limits.max_templates}")
    for i, template in enumerate(templates):
        if template.count("{}") != 1:
            raise invalid(f"templates[{i}] must contain '{{}}' exactly once, where the label goes")
    return ClassifyQuery(bytes(request.image), labels, templates)
