"""The gRPC face: request bytes to typed queries, through the pipeline, results to
protobuf; `Status` to gRPC codes. Nothing here decides anything the HTTP face does not."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import TypeVar

import grpc
from google.protobuf.message import DecodeError, Message

from clipsearch.server.core import validate
from clipsearch.server.core.calls import CallContext, RequestError, Rpc, Status, invalid
from clipsearch.server.core.served import Served
from clipsearch.server.pipeline import Caller, Face, Pipeline
from clipsearch.server.wire import requests, responses
from clipsearch.v1 import search_pb2 as pb

M = TypeVar("M", bound=Message)
SERVICE = pb.DESCRIPTOR.services_by_name["SearchService"]
NO_DEADLINE_S = 365 * 24 * 3600.0

CODES: Mapping[Status, grpc.StatusCode] = {
    Status.INVALID_ARGUMENT: grpc.StatusCode.INVALID_ARGUMENT,
    Status.TOO_LARGE: grpc.StatusCode.RESOURCE_EXHAUSTED,
    Status.NOT_FOUND: grpc.StatusCode.NOT_FOUND,
    Status.FAILED_PRECONDITION: grpc.StatusCode.FAILED_PRECONDITION,
    Status.RESOURCE_EXHAUSTED: grpc.StatusCode.RESOURCE_EXHAUSTED,
    Status.DEADLINE_EXCEEDED: grpc.StatusCode.DEADLINE_EXCEEDED,
    Status.CANCELLED: grpc.StatusCode.CANCELLED,
    Status.UNAVAILABLE: grpc.StatusCode.UNAVAILABLE,
    Status.UNAUTHENTICATED: grpc.StatusCode.UNAUTHENTICATED,
    Status.PERMISSION_DENIED: grpc.StatusCode.PERMISSION_DENIED,
    Status.INTERNAL: grpc.StatusCode.INTERNAL,
}

# What each RPC does once its request is parsed: (request, served indexes, call) -> response.
Work = Callable[[M, Served, CallContext], Message]


def _search(request: pb.SearchRequest, served: Served, call: CallContext) -> Message:
    service = served.index(request.index)
    query = requests.parse_search(request, service.encoder.dim, service.limits)
    return responses.search_response(service.search([query], call)[0])


def _batch_search(request: pb.BatchSearchRequest, served: Served, call: CallContext) -> Message:
    """Queries may name different indexes: each index searches its own, in one batch."""
    validate.batch_size(len(request.queries), "queries", served.encodings[0].limits)
    by_index: dict[str, list[int]] = {}
    for n, query in enumerate(request.queries):
        by_index.setdefault(query.index, []).append(n)
    results: dict[int, pb.SearchResponse] = {}
    for name, members in by_index.items():
        service = served.index(name, f"queries[{members[0]}].index")
        queries = requests.parse_batch(request, service.encoder.dim, service.limits, members)
        for n, result in zip(members, service.search(queries, call), strict=True):
            results[n] = responses.search_response(result)
    return pb.BatchSearchResponse(results=[results[n] for n in range(len(request.queries))])


def _embed(request: pb.EmbedRequest, served: Served, call: CallContext) -> Message:
    encoding = served.encoding(request.index)
    embeddings = encoding.embed(requests.parse_embed(request, encoding.limits), call)
    info = encoding.encoder.info
    return responses.embed_response(embeddings, info.model, info.pretrained)


def _classify(request: pb.ClassifyRequest, served: Served, call: CallContext) -> Message:
    encoding = served.encoding(request.index)
    query = requests.parse_classify(request, encoding.limits)
    return responses.classify_response(encoding.classify(query, call))


def _index_info(request: pb.GetIndexInfoRequest, served: Served, __: CallContext) -> Message:
    info = served.index(request.index).info()
    return responses.info_response(replace(info, served_indexes=served.names))


def _reload(request: pb.ReloadIndexRequest, served: Served, __: CallContext) -> Message:
    return responses.reload_response(served.index(request.index).reload())


WORK: Mapping[Rpc, Work] = {  # type: ignore[type-arg]
    Rpc.SEARCH: _search,
    Rpc.BATCH_SEARCH: _batch_search,
    Rpc.EMBED: _embed,
    Rpc.CLASSIFY: _classify,
    Rpc.GET_INDEX_INFO: _index_info,
    Rpc.RELOAD_INDEX: _reload,
}


def rpc_handlers(pipeline: Pipeline) -> grpc.GenericRpcHandler:
    """The service's handlers. They parse request bytes themselves, inside the pipeline:
    bytes that are not a valid message get INVALID_ARGUMENT (gRPC's own deserializer
    would answer INTERNAL), counted like any other bad request."""
    handlers = {}
    for method in SERVICE.methods:
        rpc = Rpc(method.name)
        request_class = getattr(pb, method.input_type.name)
        response_class = getattr(pb, method.output_type.name)
        handlers[method.name] = grpc.unary_unary_rpc_method_handler(
            _handler(pipeline, rpc, request_class, WORK[rpc]),
            response_serializer=response_class.SerializeToString,
        )
    return grpc.method_handlers_generic_handler(SERVICE.full_name, handlers)


def _handler(
    pipeline: Pipeline,
    rpc: Rpc,
    request_class: type[Message],
    work: Work,  # type: ignore[type-arg]
) -> Callable[[bytes, grpc.ServicerContext], Message]:
    def handle(raw: bytes, context: grpc.ServicerContext) -> Message:
        def run(served: Served, call: CallContext) -> Message:
            return work(_parse(raw, request_class), served, call)

        try:
            return pipeline.run(rpc, Face.GRPC, _caller(context), run)
        except RequestError as err:
            context.abort(CODES[err.status], err.message)
        raise AssertionError("context.abort returned")  # abort always raises

    return handle


def _parse(raw: bytes, request_class: type[Message]) -> Message:
    try:
        return request_class.FromString(raw)
    except DecodeError as err:
        raise invalid(
            f"the request is not a valid {request_class.DESCRIPTOR.full_name} message"
        ) from err


def _caller(context: grpc.ServicerContext) -> Caller:
    remaining = context.time_remaining()
    # A call without a deadline reports an effectively infinite remaining time, which no
    # timer accepts: treat it as no deadline.
    no_deadline = remaining is None or remaining > NO_DEADLINE_S
    deadline = None if no_deadline else time.monotonic() + remaining
    return Caller(_authorization(context.invocation_metadata()), deadline, context.is_active)


def _authorization(metadata: Sequence[tuple[str, str | bytes]] | None) -> str | None:
    for name, value in metadata or ():
        if name.lower() == "authorization" and isinstance(value, str):
            return value
    return None
