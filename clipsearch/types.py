"""The typed queries and results of the search API, shared by the client and the server.

Protobuf stays at the faces: the client and the servers' gRPC and HTTP faces convert to
and from these types, and nothing else sees a message.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from enum import StrEnum

import numpy as np

from clipsearch.filters import Filter


@dataclass(frozen=True)
class TextQuery:
    text: str


@dataclass(frozen=True)
class ImageQuery:
    data: bytes


@dataclass(frozen=True)
class ImageUrlQuery:
    url: str


@dataclass(frozen=True, eq=False)
class VectorQuery:
    vector: np.ndarray  # (dim,) float32, unit length


@dataclass(frozen=True)
class ItemQuery:
    item_id: int


Query = TextQuery | ImageQuery | ImageUrlQuery | VectorQuery | ItemQuery


class Target(StrEnum):
    """What a search compares the query with."""

    IMAGES = "images"
    CAPTIONS = "captions"  # needs captions embedded (`clipsearch embed --embed-captions`)


DEFAULT_COLLAPSE_THRESHOLD = 0.94  # clip-retrieval's measured near-duplicate threshold


@dataclass(frozen=True)
class Collapse:
    """Fold hits at or above `threshold` cosine similarity to a better hit into it."""

    threshold: float = DEFAULT_COLLAPSE_THRESHOLD
    with_ids: bool = False


@dataclass(frozen=True)
class SearchOptions:
    top_k: int = 10
    nprobe: int | None = None  # None: the index's measured default
    candidates: int | None = None
    with_metadata: bool = True
    filter: Filter | None = None
    min_score: float | None = None
    collapse: Collapse | None = None
    target: Target = Target.IMAGES
    page_token: str = ""  # the next_page_token of the previous page
    index: str = ""  # which served index; "" when the server serves one


@dataclass(frozen=True)
class SearchQuery:
    query: Query
    options: SearchOptions = SearchOptions()


class QueryKind(StrEnum):
    """Which of CLIP's towers made a query's vector. Text embeddings sit apart from image
    embeddings (the modality gap), so an index needs, and keeps, search settings for each."""

    IMAGE = "image"  # image, image URL, item and vector queries
    TEXT = "text"


def query_kind(query: Query) -> QueryKind:
    return QueryKind.TEXT if isinstance(query, TextQuery) else QueryKind.IMAGE


class QuerySource(StrEnum):
    """Where a build's evaluation queries of one kind came from."""

    HELD_OUT = "held_out"  # rows of the searched index, each left out of its own results
    IMAGES = "images"  # the version's image vectors (image queries against the captions)
    CAPTIONS = "captions"  # the collection's caption embeddings (text against the images)
    PROMPTS = "prompts"  # the model's text tower on clipsearch's prompt set
    NOT_MEASURED = "not_measured"  # none: the settings are those of the other kind


@dataclass(frozen=True)
class EmbedQuery:
    """Texts, images and image URLs to embed; vectors come back in that order."""

    texts: tuple[str, ...] = ()
    images: tuple[bytes, ...] = ()
    image_urls: tuple[str, ...] = ()


@dataclass(frozen=True)
class ClassifyQuery:
    image: bytes
    labels: tuple[str, ...]
    templates: tuple[str, ...] = ("a photo of a {}.",)


@dataclass(frozen=True)
class Timing:
    total_ms: float = 0.0
    queue_ms: float = 0.0
    encode_ms: float = 0.0
    search_ms: float = 0.0

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


@dataclass(frozen=True)
class Hit:
    id: int
    score: float  # cosine similarity, in [-1, 1]
    uri: str = ""
    caption: str = ""
    metadata_json: str = ""
    duplicates: int = 0  # with collapse: the near-duplicates folded into this hit
    duplicate_ids: tuple[int, ...] = ()

    def to_dict(self) -> dict[str, object]:
        """The one JSON shape of a hit (`query --json`, HTTP /v1/search): protobuf's JSON
        mapping of clipsearch.v1.Hit, every field present. Ids are decimal strings, as
        that mapping writes 64-bit integers, because JavaScript numbers cannot hold them."""
        return {
            "id": str(self.id),
            "score": self.score,
            "uri": self.uri,
            "caption": self.caption,
            "metadata_json": self.metadata_json,
            "duplicates": self.duplicates,
            "duplicate_ids": [str(i) for i in self.duplicate_ids],
        }


@dataclass(frozen=True)
class SearchResult:
    hits: list[Hit]
    index_version: str
    timing: Timing
    next_page_token: str = ""  # empty: no more hits

    def to_dict(self) -> dict[str, object]:
        """The JSON shape of clipsearch.v1.SearchResponse, as Hit.to_dict."""
        return {
            "hits": [hit.to_dict() for hit in self.hits],
            "index_version": self.index_version,
            "timing": self.timing.to_dict(),
            "next_page_token": self.next_page_token,
        }


@dataclass(frozen=True, eq=False)
class Embeddings:
    texts: np.ndarray  # (n_texts, dim)
    images: np.ndarray  # (n_images, dim)


@dataclass(frozen=True)
class LabelScore:
    label: str
    probability: float
    similarity: float


@dataclass(frozen=True)
class SearchDefaults:
    """The default search settings for one kind of query, and what they reached at build
    time (recall 0 when that kind was not measured)."""

    nprobe: int = 0
    candidates: int = 0
    recall_at_10: float = 0.0
    recall_at_1: float = 0.0
    source: QuerySource = QuerySource.NOT_MEASURED
    # Text queries from captions: how often a caption's own image is among the 10 hits at
    # these settings, and among its 10 exact nearest images (the model's own ceiling).
    own_image_at_10: float | None = None
    own_image_at_10_exact: float | None = None

    @property
    def measured(self) -> bool:
        return self.source is not QuerySource.NOT_MEASURED


@dataclass(frozen=True)
class IndexInfo:
    index: str  # its name on this server
    model: str
    pretrained: str
    dim: int
    device: str
    count: int = 0
    index_version: str = ""
    factory: str = ""
    # The defaults of image, image-URL, item and vector queries, and what they reached.
    default_nprobe: int = 0
    default_candidates: int = 0
    target_recall: float = 0.0
    recall_at_10: float = 0.0
    recall_at_1: float = 0.0
    text: SearchDefaults = SearchDefaults()  # the defaults of text queries
    refused_version: str = ""
    refused_reason: str = ""
    fields: tuple[FieldInfo, ...] = ()  # what filters can test
    captions: bool = False  # captions are indexed: Target.CAPTIONS can be searched
    served_indexes: tuple[str, ...] = ()  # every index the server serves


class FieldType(StrEnum):
    STRING = "string"
    NUMBER = "number"
    BOOL = "bool"
    DATE = "date"  # ISO 8601 text, compared as times


@dataclass(frozen=True)
class FieldInfo:
    """A field filters can test."""

    name: str  # e.g. "width" or "metadata.camera.model"
    type: FieldType
    list: bool = False  # holds lists: equals and in test membership


@dataclass(frozen=True)
class Reloaded:
    index_version: str
    changed: bool
    refused_version: str = ""
    refused_reason: str = ""


class HealthStatus(StrEnum):
    """A server's answer to grpc.health.v1, as the client reports it."""

    SERVING = "SERVING"
    NOT_SERVING = "NOT_SERVING"
    SERVICE_UNKNOWN = "SERVICE_UNKNOWN"
    UNKNOWN = "UNKNOWN"
