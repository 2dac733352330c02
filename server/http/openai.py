"""OpenAI's embeddings API shape: requests to inputs, vectors to responses, errors.

Pure functions on plain values; the HTTP face (app.py) does the I/O.
https://platform.openai.com/docs/api-reference/embeddings
"""

from __future__ import annotations

import base64
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

import numpy as np

from clipsearch.server.core import validate
from clipsearch.server.core.calls import RequestError, Status, invalid
from clipsearch.server.core.config import Limits
from clipsearch.types import EmbedQuery

DATA_URL = re.compile(r"data:image/[\w.+-]+;base64,(?P<data>.*)", re.DOTALL)
HTTP_STATUS: Mapping[Status, int] = {
    Status.INVALID_ARGUMENT: 400,
    Status.UNAUTHENTICATED: 401,
    Status.PERMISSION_DENIED: 403,
    Status.NOT_FOUND: 404,
    Status.FAILED_PRECONDITION: 400,
    Status.TOO_LARGE: 413,
    Status.RESOURCE_EXHAUSTED: 429,
    Status.CANCELLED: 499,
    Status.INTERNAL: 500,
    Status.UNAVAILABLE: 503,
    Status.DEADLINE_EXCEEDED: 504,
}
# OpenAI's error types; its clients retry 408, 409, 429 and 5xx, nothing else.
ERROR_TYPE: Mapping[int, str] = {
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    429: "rate_limit_error",
}


@dataclass(frozen=True)
class TextInput:
    text: str


@dataclass(frozen=True)
class ImageInput:
    data: bytes


@dataclass(frozen=True)
class ImageUrlInput:
    url: str


EmbeddingInput = TextInput | ImageInput | ImageUrlInput


@dataclass(frozen=True)
class EmbeddingsRequest:
    model: str
    inputs: list[EmbeddingInput]
    encoding_format: Literal["float", "base64"]


def parse_embeddings_request(
    body: object, served: frozenset[str], limits: Limits
) -> EmbeddingsRequest:
    """Validate an embeddings request by the same rules as gRPC's Embed; `served` holds the
    model names this server answers to."""
    if not isinstance(body, dict):
        raise invalid("the request body must be a JSON object")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise invalid("'model' is required: one of " + ", ".join(sorted(served)))
    if model not in served:
        raise RequestError(
            Status.NOT_FOUND,
            f"the model {model!r} is not served here; use one of " + ", ".join(sorted(served)),
        )
    raw = body.get("input")
    items = [raw] if isinstance(raw, str) else raw
    if not isinstance(items, list) or not items:
        raise invalid("'input' must be a string or a non-empty list of strings")
    if not all(isinstance(item, str) for item in items):
        raise invalid(
            "'input' must hold strings (texts, data:image/...;base64 URLs or http(s) image "
            "URLs); token arrays are not accepted"
        )
    encoding = body.get("encoding_format", "float")
    if encoding not in ("float", "base64"):
        raise invalid("'encoding_format' must be 'float' or 'base64'")
    validate.embed_inputs(len(items), limits)  # before any input is decoded or fetched
    inputs = [_input(item, f"input[{n}]", limits) for n, item in enumerate(items)]
    return EmbeddingsRequest(model, inputs, encoding)


def _input(item: str, field: str, limits: Limits) -> EmbeddingInput:
    _check_unicode(item, field)
    if item.startswith("data:"):
        match = DATA_URL.fullmatch(item)
        if match is None:
            raise invalid(f"{field}: a data URL must look like data:image/png;base64,...")
        try:
            data = base64.b64decode(match["data"], validate=True)
        except ValueError as err:  # binascii.Error, or a character that is not ASCII
            raise invalid(f"{field}: the data URL is not valid base64") from err
        return ImageInput(validate.image(data, field))
    if item.startswith(("http://", "https://")):
        return ImageUrlInput(item)
    return TextInput(validate.text(item, field, limits))


def _check_unicode(item: str, field: str) -> None:
    """JSON can escape a lone surrogate ("\\ud800"), which is no character: refused, as
    protobuf refuses it in gRPC's strings and in /v1/search."""
    try:
        item.encode()
    except UnicodeEncodeError as err:
        raise invalid(f"{field} is not valid Unicode: a lone surrogate at {err.start}") from err


def embed_query(request: EmbeddingsRequest) -> tuple[EmbedQuery, list[int]]:
    """The service's query, and where each of its vectors (texts, images, then image
    URLs) goes in the response's order."""
    kinds = (TextInput, ImageInput, ImageUrlInput)
    order = [n for kind in kinds for n, i in enumerate(request.inputs) if isinstance(i, kind)]
    query = EmbedQuery(
        texts=tuple(i.text for i in request.inputs if isinstance(i, TextInput)),
        images=tuple(i.data for i in request.inputs if isinstance(i, ImageInput)),
        image_urls=tuple(i.url for i in request.inputs if isinstance(i, ImageUrlInput)),
    )
    return query, order


def embeddings_response(
    vectors: np.ndarray, model: str, encoding: str, prompt_tokens: int
) -> dict[str, object]:
    data = [
        {"object": "embedding", "index": n, "embedding": _encode(vector, encoding)}
        for n, vector in enumerate(vectors)
    ]
    usage = {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens}
    return {"object": "list", "data": data, "model": model, "usage": usage}


def _encode(vector: np.ndarray, encoding: str) -> list[float] | str:
    if encoding == "base64":  # little-endian float32, as OpenAI's clients decode it
        return base64.b64encode(vector.astype("<f4").tobytes()).decode()
    return [float(v) for v in vector.tolist()]  # tolist: C floats, not numpy scalars


def models_response(names: list[str], owner: str = "clipsearch") -> dict[str, object]:
    return {
        "object": "list",
        "data": [{"id": n, "object": "model", "created": 0, "owned_by": owner} for n in names],
    }


def error_body(status: int, message: str) -> dict[str, object]:
    kind = ERROR_TYPE.get(status, "invalid_request_error" if status < 500 else "server_error")
    return {"error": {"message": message, "type": kind, "param": None, "code": None}}
