"""The HTTP face: an OpenAI-compatible embeddings API, JSON search and classify that mirror
the gRPC API, thumbnails, a search page, and the API's OpenAPI description. Every route
translates into the same typed queries as gRPC and runs through the same pipeline (keys,
quotas, limits, deadlines, metrics, logs); only the wire format is its own.

    GET  /                    the search page
    GET  /openapi.json        this API, described
    GET  /v1/models           the served model, under each of its names
    POST /v1/embeddings       OpenAI's embeddings request and response
    POST /v1/search           a clipsearch.v1.SearchRequest as JSON (protobuf JSON mapping)
    POST /v1/classify         a clipsearch.v1.ClassifyRequest as JSON
    GET  /v1/index?index=N    clipsearch.v1.GetIndexInfoResponse as JSON (N: a served index)
    GET  /v1/indexes          the names of the served indexes
    GET  /v1/thumbnails/ID    a thumbnail of an indexed image (only indexed ones)
    POST /knn-service, GET /indices-list, POST /metadata
                              clip-retrieval's clip-back API (clipback.py), also under
                              /key/SECRET/ for its clients, which cannot send headers
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any

import anyio
import numpy as np
import open_clip
from google.protobuf import json_format
from google.protobuf.message import Message
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Route

from clipsearch.encoder import EncoderInfo
from clipsearch.server.config import ServerConfig
from clipsearch.server.core.calls import CallContext, RequestError, Rpc, Status, invalid
from clipsearch.server.core.served import Served
from clipsearch.server.http import clipback, openai
from clipsearch.server.http.openapi import openapi_document
from clipsearch.server.http.thumbnails import Thumbnails
from clipsearch.server.pipeline import Caller, Face, Pipeline
from clipsearch.server.wire import requests, responses
from clipsearch.v1 import search_pb2 as pb

PAGE = Path(__file__).parent / "page" / "index.html"
JSON = "application/json"
# Past the limit the rest of a body is read and dropped, up to this much, so the client
# hears the 413 instead of a reset connection (which clients retry).
DRAIN_LIMIT_BYTES = 256 * 1024 * 1024


@dataclass(frozen=True)
class Reply:
    body: bytes
    media_type: str = JSON
    headers: Mapping[str, str] = field(default_factory=dict)


# A route's work once admitted: (served indexes, call, the parsed JSON body of a POST or
# the query parameters of a GET) -> reply.
Work = Callable[[Served, CallContext, Any], Reply]


def served_model_names(info: EncoderInfo) -> list[str]:
    """Every name a client may use for the served model: the OpenCLIP name, name/tag,
    and the Hugging Face repo the pretrained tag points to."""
    names = [info.model]
    if info.pretrained and info.pretrained != "none":
        names.append(f"{info.model}/{info.pretrained}")
        try:
            hub = open_clip.get_pretrained_cfg(info.model, info.pretrained).get("hf_hub")
        except (KeyError, RuntimeError):
            hub = None
        if hub:
            names.append(hub.strip("/"))
    return names


class HttpFace:
    def __init__(self, pipeline: Pipeline, config: ServerConfig) -> None:
        self.pipeline = pipeline
        self.settings = config.http
        self.max_body_bytes = config.max_message_bytes
        # Threads for calls at work or waiting for a turn: the pipeline's slots decide.
        self.max_concurrent = config.max_concurrent_rpcs + config.max_waiting_rpcs
        self.thumbnails = Thumbnails()
        self.clip_back = clipback.ClipBack(self.thumbnails)
        self.page = PAGE.read_bytes()
        self.openapi = json.dumps(openapi_document()).encode()
        self._limiter: anyio.CapacityLimiter | None = None  # made on the server's loop

    def app(self) -> Starlette:
        routes = [
            Route("/", self._page, methods=["GET"]),
            Route("/openapi.json", self._openapi, methods=["GET"]),
            Route("/v1/models", self._route(Rpc.GET_INDEX_INFO, _models), methods=["GET"]),
            Route("/v1/embeddings", self._route(Rpc.EMBED, _embeddings), methods=["POST"]),
            Route("/v1/search", self._route(Rpc.SEARCH, _search), methods=["POST"]),
            Route("/v1/classify", self._route(Rpc.CLASSIFY, _classify), methods=["POST"]),
            Route("/v1/index", self._route(Rpc.GET_INDEX_INFO, _index), methods=["GET"]),
            Route("/v1/indexes", self._route(Rpc.GET_INDEX_INFO, _indexes), methods=["GET"]),
            Route("/v1/thumbnails/{item_id}", self._thumbnail, methods=["GET"]),
            *(
                Route(path, self._clip_back(rpc, work), methods=[method])
                for path, method, rpc, work in self.clip_back.routes()
            ),
        ]
        return Starlette(routes=routes, exception_handlers={HTTPException: _http_error})

    async def _page(self, _: Request) -> Response:
        return _response(Reply(self.page, "text/html; charset=utf-8"))

    async def _openapi(self, _: Request) -> Response:
        return _response(Reply(self.openapi))

    async def _thumbnail(self, request: Request) -> Response:
        item = request.path_params["item_id"]

        def work(served: Served, _: CallContext, params: Mapping[str, str]) -> Reply:
            try:
                item_id = int(item)
            except ValueError as err:
                raise invalid(f"{item!r} is not an item id") from err
            service = served.index(params.get("index", ""))
            return Reply(self.thumbnails.get(service.holder.current, item_id), "image/jpeg")

        return await self._answer(request, Rpc.SEARCH, work)

    def _route(self, rpc: Rpc, work: Work) -> Callable[[Request], Any]:
        async def endpoint(request: Request) -> Response:
            return await self._answer(request, rpc, work)

        return endpoint

    def _clip_back(self, rpc: Rpc, work: clipback.Work) -> Callable[[Request], Any]:
        def run(served: Served, call: CallContext, body: object) -> Reply:
            answer = work(served, call, body)
            return Reply(json.dumps(answer.body).encode(), headers=answer.headers)

        async def endpoint(request: Request) -> Response:
            response = await self._answer(request, rpc, run)
            response.headers.update(self._cors(request))  # errors too, so a page can read them
            return response

        return endpoint

    def _cors(self, request: Request) -> dict[str, str]:
        """Cross-origin reading for the origins `--cors-origin` allows, and no others: a page
        a user happens to open must not read a keyless local server's photos."""
        allowed = self.settings.cors_origins
        origin = request.headers.get("origin", "")
        if "*" in allowed:
            granted = "*"
        elif origin and origin in allowed:
            granted = origin
        else:
            return {}
        return {
            "Access-Control-Allow-Origin": granted,
            "Access-Control-Expose-Headers": clipback.EXPOSED,
            "Vary": "Origin",
        }

    async def _answer(self, request: Request, rpc: Rpc, work: Work) -> Response:
        """Read the body, then run `work` through the pipeline in a worker thread, with a
        deadline and a flag that turns when the client disconnects (its queued work is
        then dropped)."""
        body = await self._read_body(request) if request.method == "POST" else None
        params = dict(request.query_params)
        gone = threading.Event()
        watcher = asyncio.create_task(_watch_disconnect(request, gone))
        caller = Caller(
            authorization=_authorization(request),
            deadline=time.monotonic() + self.settings.request_timeout_s,
            is_active=lambda: not gone.is_set(),
        )

        def run(served: Served, call: CallContext) -> Reply:
            return work(served, call, params if body is None else _parse_json(body))

        if self._limiter is None:
            self._limiter = anyio.CapacityLimiter(self.max_concurrent)
        try:
            reply = await anyio.to_thread.run_sync(
                partial(self.pipeline.run, rpc, Face.HTTP, caller, run), limiter=self._limiter
            )
        except RequestError as err:
            return _error(openai.HTTP_STATUS[err.status], err.message)
        finally:
            watcher.cancel()
        return _response(reply)

    async def _read_body(self, request: Request) -> bytes | RequestError:
        """The body, or the error to answer with (raised inside the pipeline, so it is
        admitted, counted and logged like any other)."""
        limit = self.max_body_bytes
        chunks: list[bytes] = []
        size = 0
        try:
            async for chunk in request.stream():
                size += len(chunk)
                if size <= limit:
                    chunks.append(chunk)
                elif size > DRAIN_LIMIT_BYTES:
                    break
        except ClientDisconnect:  # routine, not a crash: counted and logged as a cancel
            return RequestError(Status.CANCELLED, "the client hung up while sending the body")
        if size > limit:
            return RequestError(
                Status.TOO_LARGE,
                f"the body has {size if size <= DRAIN_LIMIT_BYTES else 'over ' + str(size)} "
                f"bytes, over this server's {limit}-byte limit (--max-message-mb): send fewer "
                "or smaller inputs per request",
            )
        return b"".join(chunks)


def _authorization(request: Request) -> str | None:
    """The `authorization` header, or the key of a /key/SECRET/... path (for clients that
    cannot send headers)."""
    key = request.path_params.get("key")
    return request.headers.get("authorization") or (f"Bearer {key}" if key else None)


def _parse_json(body: bytes | RequestError | None) -> object:
    if isinstance(body, RequestError):
        raise body
    if body is None:
        return None
    try:
        return json.loads(body or b"null")
    except ValueError as err:  # JSONDecodeError, or bytes that are not UTF-8
        raise invalid(f"the body is not JSON: {err}") from err
    except RecursionError as err:
        raise invalid("the body is not JSON this server reads: it nests too deeply") from err


async def _watch_disconnect(request: Request, gone: threading.Event) -> None:
    """Sets `gone` when the client hangs up; once the body is read, the next ASGI message
    is the disconnect."""
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            gone.set()
            return


# --- the routes' work: typed queries in, replies out ----------------------------------------


def _models(served: Served, _: CallContext, __: object) -> Reply:
    names = [n for e in served.encodings for n in served_model_names(e.encoder.info)]
    return _json(openai.models_response(names))


def _embeddings(served: Served, call: CallContext, body: object) -> Reply:
    by_name = {n: e for e in served.encodings for n in served_model_names(e.encoder.info)}
    limits = served.encodings[0].limits  # every model is served under the same limits
    request = openai.parse_embeddings_request(body, frozenset(by_name), limits)
    encoding = by_name[request.model]
    query, order = openai.embed_query(request)
    embedded = encoding.embed(query, call)
    vectors = np.empty((len(order), encoding.encoder.dim), dtype=np.float32)
    vectors[order] = np.concatenate([embedded.texts, embedded.images])
    tokens = encoding.count_tokens(list(query.texts))
    return _json(
        openai.embeddings_response(vectors, request.model, request.encoding_format, tokens)
    )


def _search(served: Served, call: CallContext, body: object) -> Reply:
    message = _proto(body, pb.SearchRequest())
    service = served.index(message.index)
    query = requests.parse_search(message, service.encoder.dim, service.limits)
    return _json(service.search([query], call)[0].to_dict())  # the one JSON shape of a hit


def _classify(served: Served, call: CallContext, body: object) -> Reply:
    message = _proto(body, pb.ClassifyRequest())
    encoding = served.encoding(message.index)
    query = requests.parse_classify(message, encoding.limits)
    return _proto_json(responses.classify_response(encoding.classify(query, call)))


def _index(served: Served, _: CallContext, params: Mapping[str, str]) -> Reply:
    info = served.index(params.get("index", "")).info()
    return _proto_json(responses.info_response(replace(info, served_indexes=served.names)))


def _indexes(served: Served, _: CallContext, __: object) -> Reply:
    return _json({"indexes": list(served.names)})


def _proto(body: object, message: Message) -> Any:
    if not isinstance(body, dict):
        raise invalid("the request body must be a JSON object")
    try:
        return json_format.ParseDict(body, message)
    except (json_format.ParseError, RecursionError) as err:
        raise invalid(f"the request does not match {message.DESCRIPTOR.name}: {err}") from err


def _proto_json(message: Message) -> Reply:
    return _json(json_format.MessageToDict(message, preserving_proto_field_name=True))


def _json(body: object) -> Reply:
    return Reply(json.dumps(body).encode())


def _response(reply: Reply, status: int = 200) -> Response:
    return Response(
        reply.body,
        status_code=status,
        media_type=reply.media_type,
        headers={"X-Content-Type-Options": "nosniff", **reply.headers},
    )


def _error(status: int, message: str) -> Response:
    return _response(_json(openai.error_body(status, message)), status)


async def _http_error(request: Request, exc: Exception) -> Response:
    """Unknown paths and methods, answered in the same error shape as everything else."""
    assert isinstance(exc, HTTPException)
    if exc.status_code == 405:
        return _error(405, f"{request.method} {request.url.path} is not allowed here")
    return _error(exc.status_code, f"{request.method} {request.url.path} is not an endpoint")
