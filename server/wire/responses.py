"""Internal results to protobuf responses."""

from __future__ import annotations

import numpy as np

from clipsearch.types import (
    Embeddings,
    FieldType,
    IndexInfo,
    LabelScore,
    QuerySource,
    Reloaded,
    SearchDefaults,
    SearchResult,
)
from clipsearch.v1 import search_pb2 as pb

FIELD_TYPES = {
    FieldType.STRING: pb.FIELD_TYPE_STRING,
    FieldType.NUMBER: pb.FIELD_TYPE_NUMBER,
    FieldType.BOOL: pb.FIELD_TYPE_BOOL,
    FieldType.DATE: pb.FIELD_TYPE_DATE,
}
QUERY_SOURCES = {
    QuerySource.NOT_MEASURED: pb.QUERY_SOURCE_UNSPECIFIED,
    QuerySource.HELD_OUT: pb.QUERY_SOURCE_HELD_OUT,
    QuerySource.IMAGES: pb.QUERY_SOURCE_IMAGES,
    QuerySource.CAPTIONS: pb.QUERY_SOURCE_CAPTIONS,
    QuerySource.PROMPTS: pb.QUERY_SOURCE_PROMPTS,
}


def search_response(result: SearchResult) -> pb.SearchResponse:
    t = result.timing
    return pb.SearchResponse(
        hits=[
            pb.Hit(
                id=h.id,
                score=h.score,
                uri=h.uri,
                caption=h.caption,
                metadata_json=h.metadata_json,
                duplicates=h.duplicates,
                duplicate_ids=h.duplicate_ids,
            )
            for h in result.hits
        ],
        index_version=result.index_version,
        next_page_token=result.next_page_token,
        timing=pb.Timing(
            total_ms=t.total_ms, queue_ms=t.queue_ms, encode_ms=t.encode_ms, search_ms=t.search_ms
        ),
    )


def embed_response(embeddings: Embeddings, model: str, pretrained: str) -> pb.EmbedResponse:
    return pb.EmbedResponse(
        text_embeddings=_vectors(embeddings.texts),
        image_embeddings=_vectors(embeddings.images),
        model=model,
        pretrained=pretrained,
    )


def classify_response(scores: list[LabelScore]) -> pb.ClassifyResponse:
    return pb.ClassifyResponse(
        scores=[
            pb.LabelScore(label=s.label, probability=s.probability, similarity=s.similarity)
            for s in scores
        ]
    )


def info_response(info: IndexInfo) -> pb.GetIndexInfoResponse:
    response = pb.GetIndexInfoResponse(
        model=info.model,
        pretrained=info.pretrained,
        dim=info.dim,
        count=info.count,
        index_version=info.index_version,
        factory=info.factory,
        default_effort=pb.SearchEffort(
            nprobe=info.default_nprobe, rerank_candidates=info.default_candidates
        ),
        target_recall=info.target_recall,
        recall_at_10=info.recall_at_10,
        recall_at_1=info.recall_at_1,
        device=info.device,
        fields=[
            pb.FieldInfo(name=f.name, type=FIELD_TYPES[f.type], list=f.list) for f in info.fields
        ],
        captions=info.captions,
        index=info.index,
        served_indexes=info.served_indexes,
        text_defaults=measured_defaults(info.text),
    )
    if info.refused_version:
        response.refused_version.CopyFrom(
            pb.RefusedVersion(index_version=info.refused_version, reason=info.refused_reason)
        )
    return response


def measured_defaults(defaults: SearchDefaults) -> pb.MeasuredDefaults:
    return pb.MeasuredDefaults(
        effort=pb.SearchEffort(nprobe=defaults.nprobe, rerank_candidates=defaults.candidates),
        recall_at_10=defaults.recall_at_10,
        recall_at_1=defaults.recall_at_1,
        source=QUERY_SOURCES[defaults.source],
        own_image_at_10=defaults.own_image_at_10,
        own_image_at_10_exact=defaults.own_image_at_10_exact,
    )


def reload_response(reloaded: Reloaded) -> pb.ReloadIndexResponse:
    response = pb.ReloadIndexResponse(
        index_version=reloaded.index_version, changed=reloaded.changed
    )
    if reloaded.refused_version:
        response.refused_version.CopyFrom(
            pb.RefusedVersion(
                index_version=reloaded.refused_version, reason=reloaded.refused_reason
            )
        )
    return response


def _vectors(matrix: np.ndarray) -> list[pb.Vector]:
    return [pb.Vector(values=row.tolist()) for row in matrix]
