"""clip-retrieval's clip-back REST API, as its ClipClient and clip-front call it, so their
users switch to clipsearch by changing a URL:

    POST /knn-service     text, image (base64), image_url or embedding_input -> hits
    GET  /indices-list    the names `indice_name` takes
    POST /metadata        item ids -> their metadata (clip-front loads it as you scroll)

Clip-back has no keys, and neither of its clients can send a header: ClipClient posts to
its `url` as given and clip-front appends these paths to its backend URL. So each route
also answers under /key/SECRET/ (`url="http://host:1234/key/SECRET/knn-service"`), besides
the `Authorization: Bearer` header a proxy may add.

What clipsearch cannot do (safety and violence filters, aesthetic steering, multilingual
CLIP) is accepted and named in the X-Clipsearch-Ignored response header, never refused.
Translation only: the HTTP face (app.py) runs each route through the pipeline.
"""

from __future__ import annotations

import base64
import binascii
import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from clipsearch.index.version import IndexVersion
from clipsearch.server.core import validate
from clipsearch.server.core.calls import CallContext, RequestError, Rpc, Status, invalid
from clipsearch.server.core.config import Limits
from clipsearch.server.core.served import Served
from clipsearch.server.core.service import SearchService
from clipsearch.server.http.thumbnails import Thumbnails
from clipsearch.types import (
    Collapse,
    Hit,
    ImageQuery,
    ImageUrlQuery,
    Query,
    SearchOptions,
    SearchQuery,
    Target,
    TextQuery,
    VectorQuery,
)

KEY_PREFIX = "/key/{key}"  # the path parameter app.py reads as a bearer key
# Headers a page on another origin (clip-front) may read, when --cors-origin allows it.
EXPOSED = "X-Clipsearch-Ignored, X-Clipsearch-Clamped"
MODALITIES: Mapping[str, Target] = {"image": Target.IMAGES, "text": Target.CAPTIONS}
INPUTS = ("text", "image", "image_url", "embedding_input")
IGNORED = ("use_mclip", "use_safety_model", "use_violence_detector", "aesthetic_score",
           "aesthetic_weight")  # fmt: skip
DEFAULT_NUM_IMAGES = 40  # ClipClient's default


@dataclass(frozen=True)
class Answer:
    body: object  # JSON, in clip-back's shape
    headers: Mapping[str, str] = field(default_factory=dict)


Work = Callable[[Served, CallContext, Any], Answer]


@dataclass(frozen=True)
class KnnRequest:
    query: SearchQuery
    num_images: int  # the leading hits that carry metadata; the rest only id and similarity
    ignored: tuple[str, ...]  # options asked for that clipsearch does not do
    clamped_from: int | None = None  # num_result_ids asked, when over the limit


def pick_index(served: Served, body: object) -> SearchService:
    """The index a request names in `indice_name`; with none, the only one."""
    name = _object(body).get("indice_name")
    if name is not None and not isinstance(name, str):
        raise invalid("indice_name must be a string")
    return served.index(name or "", "indice_name")


# --- requests ---------------------------------------------------------------------------------


def parse_knn(body: object, dim: int, limits: Limits) -> KnnRequest:
    fields = _object(body)
    modality = fields.get("modality") or "image"
    target = MODALITIES.get(modality) if isinstance(modality, str) else None
    if target is None:
        raise invalid("modality must be 'image' (search the images) or 'text' (the captions)")
    num_images = _count(fields, "num_images", DEFAULT_NUM_IMAGES)
    validate.top_k(num_images, "num_images", limits)
    # How many hits to find; clip-front always asks for 3000 (metadata for the first
    # num_images, the rest as it scrolls): past the server's limit it gets fewer, as
    # clip-back's deduplication also gives.
    asked = _count(fields, "num_result_ids", num_images)
    if asked < 1:
        raise invalid(f"num_result_ids is {asked}: ask for at least 1")
    depth = min(asked, limits.max_top_k)
    collapse = Collapse() if fields.get("deduplicate") else None
    options = SearchOptions(top_k=depth, collapse=collapse, target=target)
    return KnnRequest(
        query=SearchQuery(_query(fields, dim, limits), options),
        num_images=num_images,
        ignored=tuple(name for name in IGNORED if fields.get(name)),
        clamped_from=asked if asked > depth else None,
    )


def parse_ids(body: object, limits: Limits) -> list[int]:
    """/metadata's ids. clip-front parses the 63-bit ids it was sent without
    rounding them (json-bigint) and sends them back as decimal strings: both are read."""
    fields = _object(body)
    ids = fields.get("ids")
    if not isinstance(ids, list):
        raise invalid("ids must be a list of item ids")
    if len(ids) > limits.max_top_k:
        raise invalid(f"ids has {len(ids)} entries, at most {limits.max_top_k} per call")
    return [_item_id(value, n) for n, value in enumerate(ids)]


def _object(body: object) -> dict[str, object]:
    if not isinstance(body, dict):
        raise invalid("the request body must be a JSON object")
    return body


def _count(fields: dict[str, object], name: str, default: int) -> int:
    value = fields.get(name)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int):
        raise invalid(f"{name} must be a whole number")
    return value


def _query(fields: dict[str, object], dim: int, limits: Limits) -> Query:
    # clip-front sends every input, the unused ones empty or null.
    given = [name for name in INPUTS if fields.get(name) not in (None, "", [])]
    if len(given) != 1:
        got = f" (got {', '.join(given)})" if given else ""
        raise invalid(f"send exactly one of {', '.join(INPUTS)}{got}")
    name, value = given[0], fields[given[0]]
    if name == "embedding_input":
        try:
            return VectorQuery(validate.unit_vector(value, dim, name))
        except (TypeError, ValueError) as err:
            raise invalid(f"{name} must be a list of {dim} numbers") from err
    if not isinstance(value, str):
        raise invalid(f"{name} must be a string")
    if name == "text":
        return TextQuery(validate.text(value, name, limits))
    if name == "image_url":
        return ImageUrlQuery(value.strip())
    try:
        data = base64.b64decode("".join(value.split()), validate=True)  # line breaks pass
    except binascii.Error as err:
        raise invalid(f"{name} is not valid base64: send the image file's bytes, encoded") from err
    return ImageQuery(validate.image(data, name))


def _item_id(value: object, n: int) -> int:
    if isinstance(value, str) and value.isdecimal():
        return int(value)
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    raise invalid(f"ids[{n}] is {value!r}: item ids are whole numbers (or decimal strings)")


# --- answers ----------------------------------------------------------------------------------


def item_fields(
    uri: str, caption: str | None, metadata_json: str | None, image: bytes | None
) -> dict[str, object]:
    """An item as clip-back shows it: its metadata's keys, then `url` (for web images) or
    `image_path` with the image inline as base64 `image` (for local files, which a page
    cannot load), then `caption` when it has one."""
    shown: dict[str, object] = {}
    if metadata_json:
        try:
            metadata = json.loads(metadata_json)
        except ValueError:  # a source's own text, kept as it came
            metadata = metadata_json
        shown.update(metadata if isinstance(metadata, dict) else {"metadata": metadata})
    if uri.startswith(("http://", "https://")):
        shown["url"] = uri
    else:
        shown["image_path"] = uri
    if image is not None:
        shown["image"] = base64.b64encode(image).decode()
    if caption:
        shown["caption"] = caption
    return shown


def knn_headers(request: KnnRequest, max_top_k: int) -> dict[str, str]:
    headers = {}
    if request.ignored:
        headers["X-Clipsearch-Ignored"] = ", ".join(request.ignored)
    if request.clamped_from is not None:
        headers["X-Clipsearch-Clamped"] = (
            f"num_result_ids={max_top_k} (asked {request.clamped_from}; this server's limit)"
        )
    return headers


# --- the routes' work -------------------------------------------------------------------------


class ClipBack:
    def __init__(self, thumbnails: Thumbnails) -> None:
        self.thumbnails = thumbnails

    def routes(self) -> list[tuple[str, str, Rpc, Work]]:
        """(path, method, rpc, work) of each route, with and without the key prefix."""
        own: list[tuple[str, str, Rpc, Work]] = [
            ("/knn-service", "POST", Rpc.SEARCH, self.knn),
            ("/indices-list", "GET", Rpc.GET_INDEX_INFO, indices),
            ("/metadata", "POST", Rpc.SEARCH, self.metadata),
        ]
        return [
            (prefix + path, method, rpc, work)
            for prefix in ("", KEY_PREFIX)
            for path, method, rpc, work in own
        ]

    def knn(self, served: Served, call: CallContext, body: object) -> Answer:
        index = pick_index(served, body)
        request = parse_knn(body, index.encoder.dim, index.limits)
        result = index.search([request.query], call)[0]
        version = index.holder.version_named(result.index_version)
        items = []
        for n, hit in enumerate(result.hits):
            item = self._shown(hit, version, call) if n < request.num_images else {}
            # clip-back's ids are ints: JSON numbers hold 63-bit ones exactly (Python reads
            # them whole, and clip-front parses them with json-bigint).
            items.append({**item, "id": hit.id, "similarity": hit.score})
        return Answer(items, knn_headers(request, index.limits.max_top_k))

    def metadata(self, served: Served, call: CallContext, body: object) -> Answer:
        """Ids the served version does not hold (deleted since the search) are left out."""
        index = pick_index(served, body)
        ids = parse_ids(body, index.limits)
        version = index.holder.current
        if version is None:
            raise RequestError(Status.UNAVAILABLE, "no index is loaded yet")
        found = []
        for item_id in ids:
            row = version.row_of(item_id)
            if row is not None:
                record = version.records.get(row)
                image = self._image(version, item_id, record.uri, call)
                shown = item_fields(record.uri, record.caption, record.metadata, image)
                found.append({"id": item_id, "metadata": shown})
        return Answer(found)

    def _shown(
        self, hit: Hit, version: IndexVersion | None, call: CallContext
    ) -> dict[str, object]:
        image = self._image(version, hit.id, hit.uri, call) if version is not None else None
        return item_fields(hit.uri, hit.caption, hit.metadata_json, image)

    def _image(
        self, version: IndexVersion, item_id: int, uri: str, call: CallContext
    ) -> bytes | None:
        """A local file's thumbnail (cached), or None for web images and files gone since
        the build. Making them is the slow part of a first answer: the deadline holds."""
        if not Path(uri).is_absolute():
            return None
        if call.deadline is not None and call.deadline <= time.monotonic():
            raise RequestError(
                Status.DEADLINE_EXCEEDED, "the deadline passed while making thumbnails"
            )
        try:
            return self.thumbnails.get(version, item_id)
        except RequestError as err:
            if err.status is not Status.NOT_FOUND:
                raise
            return None


def indices(served: Served, _: CallContext, __: object) -> Answer:
    return Answer(list(served.names))
