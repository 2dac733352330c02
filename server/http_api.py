"""The HTTP face: an OpenAI-compatible embeddings API, JSON search and classify that mirror
the gRPC API, and a search page. It runs in the gRPC server's process and calls the same
SearchService, so there is one model in memory, one set of batches, one set of API keys
and limits.

    GET  /                    the search page
    GET  /v1/models           the served model, under each of its names
    POST /v1/embeddings       OpenAI's embeddings request and response
    POST /v1/search           a clipsearch.v1.SearchRequest as JSON (proto JSON mapping)
    POST /v1/classify         a clipsearch.v1.ClassifyRequest as JSON
    GET  /v1/index            clipsearch.v1.GetIndexInfoResponse as JSON
    GET  /v1/thumbnails/ID    a thumbnail of an indexed image (only indexed ones)
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import open_clip
from google.protobuf import json_format
from google.protobuf.message import Message

from clipsearch.encoder import EncoderInfo
from clipsearch.v1 import search_pb2 as pb
from server import openai_format, requests, responses
from server.access import Access
from server.queries import CallContext, EmbedQuery, RequestError, Status, invalid
from server.service import SearchService
from server.thumbnails import Thumbnails

log = logging.getLogger(__name__)
PAGE = Path(__file__).parent / "page" / "index.html"
MAX_BODY_BYTES = 32 * 1024 * 1024
Handler = Callable[[SearchService, Any, CallContext], tuple[int, bytes, str]]


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


class HttpApi:
    def __init__(self, access: Access, max_body_bytes: int = MAX_BODY_BYTES) -> None:
        self.access = access
        self.max_body_bytes = max_body_bytes
        self.service: SearchService | None = None
        self.thumbnails = Thumbnails()

    def serve(self, host: str, port: int) -> ThreadingHTTPServer:
        api = self

        class RequestHandler(_Handler):
            pass

        RequestHandler.api = api
        server = ThreadingHTTPServer((host, port), RequestHandler)
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, name="http", daemon=True).start()
        return server

    # --- routes: each returns (status, body, content type) ---------------------------------

    def models(self, service: SearchService, _: object, __: CallContext) -> tuple[int, bytes, str]:
        names = served_model_names(service.encoder.info)
        return _json(200, openai_format.models_response(names))

    def embeddings(
        self, service: SearchService, body: object, call: CallContext
    ) -> tuple[int, bytes, str]:
        info = service.encoder.info
        request = openai_format.parse_embeddings_request(body, frozenset(served_model_names(info)))
        texts = [(n, i.text) for n, i in enumerate(request.inputs)
                 if isinstance(i, openai_format.TextInput)]  # fmt: skip
        images = [
            (n, i.data if isinstance(i, openai_format.ImageInput) else service.fetch_image(i.url))
            for n, i in enumerate(request.inputs)
            if not isinstance(i, openai_format.TextInput)
        ]
        embedded = service.embed(EmbedQuery(tuple(t for _, t in texts),
                                            tuple(d for _, d in images)), call)  # fmt: skip
        order = [n for n, _ in texts] + [n for n, _ in images]
        vectors = list(embedded.texts) + list(embedded.images)
        ordered = [v for _, v in sorted(zip(order, vectors, strict=True), key=lambda p: p[0])]
        tokens = service.count_tokens([t for _, t in texts])
        return _json(
            200,
            openai_format.embeddings_response(
                _stack(ordered), request.model, request.encoding_format, tokens
            ),
        )

    def search(
        self, service: SearchService, body: object, call: CallContext
    ) -> tuple[int, bytes, str]:
        request = _proto(body, pb.SearchRequest())
        query = requests.parse_search(request, service.encoder.dim, service.limits)
        return _proto_json(responses.search_response(service.search([query], call)[0]))

    def classify(
        self, service: SearchService, body: object, call: CallContext
    ) -> tuple[int, bytes, str]:
        query = requests.parse_classify(_proto(body, pb.ClassifyRequest()), service.limits)
        return _proto_json(responses.classify_response(service.classify(query, call)))

    def index(self, service: SearchService, _: object, __: CallContext) -> tuple[int, bytes, str]:
        return _proto_json(responses.info_response(service.info()))

    def thumbnail(
        self, service: SearchService, item_id: str, _: CallContext
    ) -> tuple[int, bytes, str]:
        try:
            wanted = int(item_id)
        except ValueError as err:
            raise invalid(f"{item_id!r} is not an item id") from err
        return 200, self.thumbnails.get(service.holder.current, wanted), "image/jpeg"


def _proto(body: object, message: Message) -> Any:
    if not isinstance(body, dict):
        raise invalid("the request body must be a JSON object")
    try:
        return json_format.ParseDict(body, message)
    except json_format.ParseError as err:
        raise invalid(f"the request does not match {message.DESCRIPTOR.name}: {err}") from err


def _proto_json(message: Message) -> tuple[int, bytes, str]:
    return _json(200, json_format.MessageToDict(message, preserving_proto_field_name=True))


def _json(status: int, body: object) -> tuple[int, bytes, str]:
    return status, json.dumps(body).encode(), "application/json"


def _stack(vectors: list[np.ndarray]) -> np.ndarray:
    return np.stack(vectors)


# Route table: (method, path prefix) -> (RPC name for scopes and limits, handler name).
ROUTES: dict[tuple[str, str], tuple[str, str]] = {
    ("GET", "/v1/models"): ("GetIndexInfo", "models"),
    ("POST", "/v1/embeddings"): ("Embed", "embeddings"),
    ("POST", "/v1/search"): ("Search", "search"),
    ("POST", "/v1/classify"): ("Classify", "classify"),
    ("GET", "/v1/index"): ("GetIndexInfo", "index"),
    ("GET", "/v1/thumbnails/"): ("Search", "thumbnail"),
}


def _matches(prefix: str, path: str) -> bool:
    """Exact paths, or a prefix ending in '/' followed by one argument."""
    if prefix.endswith("/"):
        return path.startswith(prefix) and "/" not in path[len(prefix) :] and path != prefix
    return path == prefix


class _Handler(BaseHTTPRequestHandler):
    api: HttpApi
    protocol_version = "HTTP/1.1"
    server_version = "clipsearch"

    def do_GET(self) -> None:
        if self.path in ("/", "/index.html"):
            self._send(200, PAGE.read_bytes(), "text/html; charset=utf-8")
            return
        self._route("GET")

    def do_POST(self) -> None:
        self._route("POST")

    def _route(self, method: str) -> None:
        path = self.path.split("?", 1)[0]
        matches = [(m, p) for m, p in ROUTES if _matches(p, path)]
        for route_method, prefix in matches:
            if route_method == method:
                rpc, name = ROUTES[route_method, prefix]
                argument = path[len(prefix) :] if prefix.endswith("/") else None
                self._answer(rpc, getattr(self.api, name), argument)
                return
        status = 405 if matches else 404
        self._error(status, f"{method} {path} is not an endpoint of this server")

    def _answer(self, rpc: str, handler: Handler, argument: str | None) -> None:
        try:
            metadata = [("authorization", self.headers.get("Authorization", ""))]
            with self.api.access.admit(rpc, metadata):
                service = self.api.service
                if service is None:
                    raise RequestError(Status.UNAVAILABLE, "the server is still loading its model")
                body = argument if argument is not None else self._body()
                status, payload, kind = handler(service, body, CallContext())
            self._send(status, payload, kind)
        except RequestError as err:
            self._error(openai_format.HTTP_STATUS.get(err.status, 400), err.message)
        except Exception:  # a bug: answer like one, keep serving
            log.exception("HTTP %s %s failed", self.command, self.path)
            self._error(500, "internal server error; the server log has the details")

    def _body(self) -> object:
        if self.command == "GET":
            return None
        length = int(self.headers.get("Content-Length") or 0)
        if length > self.api.max_body_bytes:
            raise RequestError(
                Status.RESOURCE_EXHAUSTED,
                f"the body has {length} bytes, over the {self.api.max_body_bytes}-byte limit",
            )
        raw = self.rfile.read(length)
        try:
            return json.loads(raw or b"null")
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise invalid(f"the body is not JSON: {err}") from err

    def _error(self, status: int, message: str) -> None:
        body = json.dumps(openai_format.error_body(status, message)).encode()
        self._send(status, body, "application/json")

    def _send(self, status: int, body: bytes, kind: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-Content-Type-Options", "nosniff")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        log.debug("http %s", format % args)
