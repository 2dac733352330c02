"""A typed Python client of the clipsearch gRPC server.

with SearchClient("localhost:50051") as client:
    for hit in client.search(TextQuery("a red bicycle in the snow"), top_k=5).hits:
        print(hit.score, hit.uri)
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import TypeVar

import grpc
import numpy as np
from grpc_health.v1 import health_pb2, health_pb2_grpc

from clipsearch.errors import ClipsearchError
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
    Scalar,
)
from clipsearch.types import (
    Collapse,
    Embeddings,
    FieldInfo,
    FieldType,
    HealthStatus,
    Hit,
    ImageQuery,
    ImageUrlQuery,
    IndexInfo,
    ItemQuery,
    LabelScore,
    Query,
    QuerySource,
    Reloaded,
    SearchDefaults,
    SearchOptions,
    SearchQuery,
    SearchResult,
    Target,
    TextQuery,
    Timing,
    VectorQuery,
)
from clipsearch.v1 import search_pb2 as pb
from clipsearch.v1 import search_pb2_grpc

DEFAULT_TARGET = "localhost:50051"
FIELD_TYPES = {
    pb.FIELD_TYPE_STRING: FieldType.STRING,
    pb.FIELD_TYPE_NUMBER: FieldType.NUMBER,
    pb.FIELD_TYPE_BOOL: FieldType.BOOL,
    pb.FIELD_TYPE_DATE: FieldType.DATE,
}
QUERY_SOURCES = {
    pb.QUERY_SOURCE_HELD_OUT: QuerySource.HELD_OUT,
    pb.QUERY_SOURCE_IMAGES: QuerySource.IMAGES,
    pb.QUERY_SOURCE_CAPTIONS: QuerySource.CAPTIONS,
    pb.QUERY_SOURCE_PROMPTS: QuerySource.PROMPTS,
}
DEFAULT_TIMEOUT_S = 30.0
# Calls the server refused for load (RESOURCE_EXHAUSTED) or that found no server
# (UNAVAILABLE: restarting, a replica going away) are retried by gRPC itself, with
# exponential backoff, within the call's deadline. Retries are safe: every RPC is a read,
# or (ReloadIndex) idempotent.
RETRY_POLICY = {
    "methodConfig": [
        {
            "name": [
                {"service": "clipsearch.v1.SearchService"},
                {"service": "grpc.health.v1.Health"},
            ],
            "retryPolicy": {
                "maxAttempts": 4,
                "initialBackoff": "0.1s",
                "maxBackoff": "2s",
                "backoffMultiplier": 2,
                "retryableStatusCodes": ["UNAVAILABLE", "RESOURCE_EXHAUSTED"],
            },
        }
    ]
}
R = TypeVar("R")

__all__ = [
    "ClientTls",
    "Collapse",
    "ImageQuery",
    "ImageUrlQuery",
    "ItemQuery",
    "RpcError",
    "SearchClient",
    "SearchOptions",
    "SearchQuery",
    "Target",
    "TextQuery",
    "VectorQuery",
]


class RpcError(ClipsearchError):
    """The server refused or failed a call; `code` is the gRPC status, `hint` what to do."""

    def __init__(self, method: str, code: grpc.StatusCode, details: str, target: str = "") -> None:
        super().__init__(f"{method}: {code.name}: {details}", hint=_hint(code, details, target))
        self.code = code
        self.details = details


def _hint(code: grpc.StatusCode, details: str, target: str) -> str | None:
    """What to do about a failed call, in the terms of the command line."""
    if code is grpc.StatusCode.UNAVAILABLE and "loading" not in details:
        return (
            f"no server answered at {target}: start one with `clipsearch serve`, or name "
            "another with --server HOST:PORT"
        )
    if code is grpc.StatusCode.RESOURCE_EXHAUSTED and "message larger than" in details:
        return (
            "the request is over the server's message limit (its --max-message-mb): send "
            "fewer or smaller images per call"
        )
    if code is grpc.StatusCode.UNAUTHENTICATED:
        return "pass the server's API key with --api-key or CLIPSEARCH_API_KEY"
    if code is grpc.StatusCode.DEADLINE_EXCEEDED:
        return "the server is slow or unreachable: raise --timeout, or check --server"
    return None


@dataclass(frozen=True)
class ClientTls:
    """Trust `ca` (None: the system's roots); present `cert`/`key` for mutual TLS."""

    ca: Path | None = None
    cert: Path | None = None
    key: Path | None = None

    def credentials(self) -> grpc.ChannelCredentials:
        def read(path: Path | None) -> bytes | None:
            return path.read_bytes() if path is not None else None

        return grpc.ssl_channel_credentials(read(self.ca), read(self.key), read(self.cert))


class SearchClient:
    def __init__(
        self,
        target: str,
        timeout_s: float | None = DEFAULT_TIMEOUT_S,
        api_key: str | None = None,
        tls: ClientTls | None = None,
    ) -> None:
        self.target = target
        self.timeout_s = timeout_s
        self._metadata = (("authorization", f"Bearer {api_key}"),) if api_key else ()
        # round_robin spreads calls over every address a target resolves to, e.g. the pods
        # of a headless Kubernetes Service (dns:///NAME.NAMESPACE.svc.cluster.local:50051).
        options = [
            ("grpc.max_receive_message_length", 64 * 1024 * 1024),
            ("grpc.lb_policy_name", "round_robin"),
            ("grpc.enable_retries", 1),
            ("grpc.service_config", json.dumps(RETRY_POLICY)),
        ]
        if tls is not None:
            self._channel = grpc.secure_channel(target, tls.credentials(), options=options)
        else:
            self._channel = grpc.insecure_channel(target, options=options)
        self._stub = search_pb2_grpc.SearchServiceStub(self._channel)  # type: ignore[no-untyped-call]
        self._health = health_pb2_grpc.HealthStub(self._channel)

    def __enter__(self) -> SearchClient:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        self._channel.close()

    def search(
        self,
        query: Query,
        top_k: int = 10,
        nprobe: int | None = None,
        rerank_candidates: int | None = None,
        with_metadata: bool = True,
        *,
        filter: Filter | None = None,
        min_score: float | None = None,
        collapse: Collapse | None = None,
        target: Target = Target.IMAGES,
        page_token: str = "",
        index: str = "",
    ) -> SearchResult:
        """The nearest items to `query`. `filter` (built with clipsearch.filters.field)
        limits them by their fields; pass a result's next_page_token as `page_token`, with
        the same query and options, for the next page. `index` names a served index (needed
        when the server serves several)."""
        options = SearchOptions(
            top_k, nprobe, rerank_candidates, with_metadata, filter, min_score, collapse,
            target, page_token, index,
        )  # fmt: skip
        request = search_request(SearchQuery(query, options))
        return _search_result(self._call("Search", self._stub.Search, request))

    def batch_search(self, queries: Sequence[SearchQuery]) -> list[SearchResult]:
        request = pb.BatchSearchRequest(queries=[search_request(q) for q in queries])
        response = self._call("BatchSearch", self._stub.BatchSearch, request)
        return [_search_result(r) for r in response.results]

    def embed(
        self, texts: Sequence[str] = (), images: Sequence[bytes] = (), index: str = ""
    ) -> Embeddings:
        request = pb.EmbedRequest(texts=list(texts), images=list(images), index=index)
        response = self._call("Embed", self._stub.Embed, request)
        return Embeddings(_matrix(response.text_embeddings), _matrix(response.image_embeddings))

    def classify(
        self,
        image: bytes,
        labels: Sequence[str],
        templates: Sequence[str] = (),
        index: str = "",
    ) -> list[LabelScore]:
        request = pb.ClassifyRequest(
            image=image, labels=list(labels), templates=list(templates), index=index
        )
        response = self._call("Classify", self._stub.Classify, request)
        return [LabelScore(s.label, s.probability, s.similarity) for s in response.scores]

    def index_info(self, index: str = "") -> IndexInfo:
        request = pb.GetIndexInfoRequest(index=index)
        r = self._call("GetIndexInfo", self._stub.GetIndexInfo, request)
        return IndexInfo(
            index=r.index,
            model=r.model,
            pretrained=r.pretrained,
            dim=r.dim,
            device=r.device,
            count=r.count,
            index_version=r.index_version,
            factory=r.factory,
            default_nprobe=r.default_effort.nprobe,
            default_candidates=r.default_effort.rerank_candidates,
            target_recall=r.target_recall,
            recall_at_10=r.recall_at_10,
            recall_at_1=r.recall_at_1,
            refused_version=r.refused_version.index_version,
            refused_reason=r.refused_version.reason,
            fields=tuple(
                FieldInfo(f.name, FIELD_TYPES[f.type], f.list)
                for f in r.fields
                if f.type in FIELD_TYPES
            ),
            captions=r.captions,
            served_indexes=tuple(r.served_indexes),
            text=(
                _measured_defaults(r.text_defaults)
                if r.HasField("text_defaults")
                # A server from before per-kind defaults searches text as it does images.
                else SearchDefaults(r.default_effort.nprobe, r.default_effort.rerank_candidates)
            ),
        )

    def health(self, service: str = "") -> HealthStatus:
        """The server's grpc.health.v1 status."""
        request = health_pb2.HealthCheckRequest(service=service)
        reply = self._call("Health", self._health.Check, request)
        return HealthStatus(health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status))

    def reload(self, index: str = "") -> Reloaded:
        request = pb.ReloadIndexRequest(index=index)
        r = self._call("ReloadIndex", self._stub.ReloadIndex, request)
        return Reloaded(
            r.index_version, r.changed, r.refused_version.index_version, r.refused_version.reason
        )

    def _call(self, method: str, stub_method: Callable[..., R], request: object) -> R:
        try:
            return stub_method(request, timeout=self.timeout_s, metadata=self._metadata)
        except grpc.RpcError as err:
            raise RpcError(method, err.code(), err.details() or "", self.target) from err


def search_request(query: SearchQuery) -> pb.SearchRequest:
    """An internal query as the wire request."""
    opts = query.options
    request = pb.SearchRequest(
        top_k=opts.top_k,
        effort=pb.SearchEffort(nprobe=opts.nprobe or 0, rerank_candidates=opts.candidates or 0),
        omit_metadata=not opts.with_metadata,
        target=pb.TARGET_CAPTIONS if opts.target is Target.CAPTIONS else pb.TARGET_IMAGES,
        page_token=opts.page_token,
        index=opts.index,
    )
    if opts.filter is not None:
        request.filter.CopyFrom(filter_message(opts.filter))
    if opts.min_score is not None:
        request.min_score = opts.min_score
    if opts.collapse is not None:
        request.collapse.CopyFrom(
            pb.Collapse(threshold=opts.collapse.threshold, with_ids=opts.collapse.with_ids)
        )
    q = query.query
    if isinstance(q, TextQuery):
        request.text = q.text
    elif isinstance(q, ImageQuery):
        request.image = q.data
    elif isinstance(q, ImageUrlQuery):
        request.image_url = q.url
    elif isinstance(q, VectorQuery):
        request.embedding.values.extend(np.asarray(q.vector, dtype=np.float32).tolist())
    else:
        request.item_id = q.item_id
    return request


def filter_message(filter: Filter) -> pb.Filter:
    """A typed filter as the wire message."""
    if isinstance(filter, AllOf):
        return pb.Filter(all=pb.FilterList(filters=[filter_message(f) for f in filter.filters]))
    if isinstance(filter, AnyOf):
        return pb.Filter(any=pb.FilterList(filters=[filter_message(f) for f in filter.filters]))
    if isinstance(filter, Not):
        message = pb.Filter()
        getattr(message, "not").CopyFrom(filter_message(filter.filter))  # a Python keyword
        return message
    return pb.Filter(condition=_condition_message(filter))


def _condition_message(condition: Condition) -> pb.Condition:
    message = pb.Condition(field=condition.field)
    test = condition.test
    if isinstance(test, Equals):
        message.equals.CopyFrom(_value(test.value))
    elif isinstance(test, In):
        message.any_of.values.extend(_value(v) for v in test.values)
    elif isinstance(test, NotIn):
        message.none_of.values.extend(_value(v) for v in test.values)
    elif isinstance(test, Between):
        for bound in ("gt", "gte", "lt", "lte"):
            value = getattr(test, bound)
            if value is not None:
                getattr(message.range, bound).CopyFrom(_value(value))
    elif isinstance(test, Exists):
        message.exists = test.present
    else:
        message.prefix = test.text
    return message


def _value(value: Scalar) -> pb.Value:
    if isinstance(value, bool):  # before numbers: a bool is an int to Python
        return pb.Value(bool_value=value)
    if isinstance(value, int | float):
        return pb.Value(number_value=float(value))
    return pb.Value(string_value=value)


def _hit(h: pb.Hit) -> Hit:
    return Hit(
        h.id, h.score, h.uri, h.caption, h.metadata_json, h.duplicates, tuple(h.duplicate_ids)
    )


def _search_result(response: pb.SearchResponse) -> SearchResult:
    t = response.timing
    return SearchResult(
        hits=[_hit(h) for h in response.hits],
        index_version=response.index_version,
        timing=Timing(t.total_ms, t.queue_ms, t.encode_ms, t.search_ms),
        next_page_token=response.next_page_token,
    )


def _measured_defaults(m: pb.MeasuredDefaults) -> SearchDefaults:
    """A source this client does not know counts as not measured."""
    return SearchDefaults(
        nprobe=m.effort.nprobe,
        candidates=m.effort.rerank_candidates,
        recall_at_10=m.recall_at_10,
        recall_at_1=m.recall_at_1,
        source=QUERY_SOURCES.get(m.source, QuerySource.NOT_MEASURED),
        own_image_at_10=m.own_image_at_10 if m.HasField("own_image_at_10") else None,
        own_image_at_10_exact=(
            m.own_image_at_10_exact if m.HasField("own_image_at_10_exact") else None
        ),
    )


def _matrix(vectors: Sequence[pb.Vector]) -> np.ndarray:
    if not vectors:
        return np.empty((0, 0), dtype=np.float32)
    return np.asarray([list(v.values) for v in vectors], dtype=np.float32)
