"""The gRPC edge: protobuf in, internal queries to the service, protobuf out, status codes."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TypeVar

import grpc
from google.protobuf.message import DecodeError, Message

from clipsearch.v1 import search_pb2 as pb
from clipsearch.v1 import search_pb2_grpc
from server import requests, responses
from server.access import Access
from server.metrics import Metrics
from server.queries import CallContext, RequestError, Status
from server.service import SearchService

log = logging.getLogger(__name__)
R = TypeVar("R")

CODES = {status: grpc.StatusCode[status.name] for status in Status}
SERVICE = pb.DESCRIPTOR.services_by_name["SearchService"]


class SearchServicer(search_pb2_grpc.SearchServiceServicer):
    """Registered before the model is loaded; answers UNAVAILABLE until `service` is set."""

    def __init__(self, metrics: Metrics, access: Access) -> None:
        self.metrics = metrics
        self.access = access
        self.service: SearchService | None = None

    def Search(self, request: pb.SearchRequest, context: grpc.ServicerContext) -> pb.SearchResponse:
        def run(service: SearchService, call: CallContext) -> pb.SearchResponse:
            query = requests.parse_search(request, service.encoder.dim, service.limits)
            return responses.search_response(service.search([query], call)[0])

        return self._answer("Search", context, run)

    def BatchSearch(
        self, request: pb.BatchSearchRequest, context: grpc.ServicerContext
    ) -> pb.BatchSearchResponse:
        def run(service: SearchService, call: CallContext) -> pb.BatchSearchResponse:
            queries = requests.parse_batch(request, service.encoder.dim, service.limits)
            results = service.search(queries, call)
            return pb.BatchSearchResponse(results=[responses.search_response(r) for r in results])

        return self._answer("BatchSearch", context, run)

    def Embed(self, request: pb.EmbedRequest, context: grpc.ServicerContext) -> pb.EmbedResponse:
        def run(service: SearchService, call: CallContext) -> pb.EmbedResponse:
            embeddings = service.embed(requests.parse_embed(request, service.limits), call)
            info = service.encoder.info
            return responses.embed_response(embeddings, info.model, info.pretrained)

        return self._answer("Embed", context, run)

    def Classify(
        self, request: pb.ClassifyRequest, context: grpc.ServicerContext
    ) -> pb.ClassifyResponse:
        def run(service: SearchService, call: CallContext) -> pb.ClassifyResponse:
            query = requests.parse_classify(request, service.limits)
            return responses.classify_response(service.classify(query, call))

        return self._answer("Classify", context, run)

    def GetIndexInfo(
        self, request: pb.GetIndexInfoRequest, context: grpc.ServicerContext
    ) -> pb.GetIndexInfoResponse:
        return self._answer(
            "GetIndexInfo", context, lambda service, _: responses.info_response(service.info())
        )

    def ReloadIndex(
        self, request: pb.ReloadIndexRequest, context: grpc.ServicerContext
    ) -> pb.ReloadIndexResponse:
        return self._answer(
            "ReloadIndex", context, lambda service, _: responses.reload_response(service.reload())
        )

    def _answer(
        self,
        rpc: str,
        context: grpc.ServicerContext,
        run: Callable[[SearchService, CallContext], R],
    ) -> R:
        started = time.monotonic()
        code = grpc.StatusCode.OK
        try:
            with self.access.admit(rpc, context.invocation_metadata()):
                service = self.service
                if service is None:
                    raise RequestError(Status.UNAVAILABLE, "the server is still loading its model")
                remaining = context.time_remaining()
                deadline = None if remaining is None else started + remaining
                return run(service, CallContext(deadline, context.is_active))
        except RequestError as err:
            code = CODES[err.status]
            log.info(
                "%s -> %s: %s", rpc, code.name, err.message,
                extra={"event": "request_failed", "rpc": rpc, "code": code.name},
            )  # fmt: skip
            context.abort(code, err.message)
        except Exception:  # a bug, not the client's fault: say so without leaking details
            code = grpc.StatusCode.INTERNAL
            log.exception("%s failed", rpc, extra={"event": "request_crashed", "rpc": rpc})
            context.abort(code, "internal server error; the server log has the details")
        finally:
            self.metrics.requests.labels(rpc, code.name).inc()
            self.metrics.latency.labels(rpc).observe(time.monotonic() - started)
        raise AssertionError("context.abort returned")  # abort always raises


def rpc_handlers(servicer: SearchServicer) -> grpc.GenericRpcHandler:
    """The service's handlers, parsing requests themselves: bytes that are not a valid
    message get INVALID_ARGUMENT (gRPC's own deserializer would answer INTERNAL)."""
    handlers = {}
    for method in SERVICE.methods:
        request_class = getattr(pb, method.input_type.name)
        response_class = getattr(pb, method.output_type.name)
        handlers[method.name] = grpc.unary_unary_rpc_method_handler(
            _parsing(servicer, method.name, request_class),
            response_serializer=response_class.SerializeToString,
        )
    return grpc.method_handlers_generic_handler(SERVICE.full_name, handlers)


def _parsing(
    servicer: SearchServicer, name: str, request_class: type[Message]
) -> Callable[[bytes, grpc.ServicerContext], Message]:
    method: Callable[[Message, grpc.ServicerContext], Message] = getattr(servicer, name)

    def handle(raw: bytes, context: grpc.ServicerContext) -> Message:
        try:
            request = request_class.FromString(raw)
        except DecodeError:
            servicer.metrics.requests.labels(name, "INVALID_ARGUMENT").inc()
            context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"the request is not a valid {request_class.DESCRIPTOR.full_name} message",
            )
        return method(request, context)

    return handle
