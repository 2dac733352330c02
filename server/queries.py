"""The server's internal request and result types; protobuf stays at the servicer edge."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum

import numpy as np


class Status(Enum):
    """Why a request failed, in gRPC's vocabulary (mapped to codes at the edge)."""

    INVALID_ARGUMENT = "invalid_argument"
    NOT_FOUND = "not_found"
    RESOURCE_EXHAUSTED = "resource_exhausted"
    DEADLINE_EXCEEDED = "deadline_exceeded"
    CANCELLED = "cancelled"
    UNAVAILABLE = "unavailable"
    UNAUTHENTICATED = "unauthenticated"
    PERMISSION_DENIED = "permission_denied"


class RequestError(Exception):
    """A request the server will not answer, with a message that says what to fix."""

    def __init__(self, status: Status, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def invalid(message: str) -> RequestError:
    return RequestError(Status.INVALID_ARGUMENT, message)


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


@dataclass(frozen=True)
class SearchOptions:
    top_k: int = 10
    nprobe: int | None = None  # None: the index's measured default
    candidates: int | None = None
    with_metadata: bool = True


@dataclass(frozen=True)
class SearchQuery:
    query: Query
    options: SearchOptions = SearchOptions()


@dataclass(frozen=True)
class EmbedQuery:
    texts: tuple[str, ...] = ()
    images: tuple[bytes, ...] = ()


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


@dataclass(frozen=True)
class Hit:
    id: int
    score: float
    uri: str = ""
    caption: str = ""
    metadata_json: str = ""


@dataclass(frozen=True)
class SearchResult:
    hits: list[Hit]
    index_version: str
    timing: Timing


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
class IndexInfo:
    model: str
    pretrained: str
    dim: int
    device: str
    count: int = 0
    index_version: str = ""
    factory: str = ""
    default_nprobe: int = 0
    default_candidates: int = 0
    target_recall: float = 0.0
    recall_at_10: float = 0.0
    recall_at_1: float = 0.0
    refused_version: str = ""
    refused_reason: str = ""


@dataclass(frozen=True)
class Reloaded:
    index_version: str
    changed: bool
    refused_version: str = ""
    refused_reason: str = ""


@dataclass(frozen=True)
class CallContext:
    """What the transport tells the service about the caller."""

    deadline: float | None = None  # time.monotonic() by which the caller stops waiting
    is_active: Callable[[], bool] | None = None  # None: always active
