from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class SearchRequest(_message.Message):
    __slots__ = ("text", "image", "embedding", "item_id", "image_url", "top_k", "effort", "omit_metadata")
    TEXT_FIELD_NUMBER: _ClassVar[int]
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    EMBEDDING_FIELD_NUMBER: _ClassVar[int]
    ITEM_ID_FIELD_NUMBER: _ClassVar[int]
    IMAGE_URL_FIELD_NUMBER: _ClassVar[int]
    TOP_K_FIELD_NUMBER: _ClassVar[int]
    EFFORT_FIELD_NUMBER: _ClassVar[int]
    OMIT_METADATA_FIELD_NUMBER: _ClassVar[int]
    text: str
    image: bytes
    embedding: Vector
    item_id: int
    image_url: str
    top_k: int
    effort: SearchEffort
    omit_metadata: bool
    def __init__(self, text: _Optional[str] = ..., image: _Optional[bytes] = ..., embedding: _Optional[_Union[Vector, _Mapping]] = ..., item_id: _Optional[int] = ..., image_url: _Optional[str] = ..., top_k: _Optional[int] = ..., effort: _Optional[_Union[SearchEffort, _Mapping]] = ..., omit_metadata: _Optional[bool] = ...) -> None: ...

class Vector(_message.Message):
    __slots__ = ("values",)
    VALUES_FIELD_NUMBER: _ClassVar[int]
    values: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, values: _Optional[_Iterable[float]] = ...) -> None: ...

class SearchEffort(_message.Message):
    __slots__ = ("nprobe", "rerank_candidates")
    NPROBE_FIELD_NUMBER: _ClassVar[int]
    RERANK_CANDIDATES_FIELD_NUMBER: _ClassVar[int]
    nprobe: int
    rerank_candidates: int
    def __init__(self, nprobe: _Optional[int] = ..., rerank_candidates: _Optional[int] = ...) -> None: ...

class SearchResponse(_message.Message):
    __slots__ = ("hits", "index_version", "timing")
    HITS_FIELD_NUMBER: _ClassVar[int]
    INDEX_VERSION_FIELD_NUMBER: _ClassVar[int]
    TIMING_FIELD_NUMBER: _ClassVar[int]
    hits: _containers.RepeatedCompositeFieldContainer[Hit]
    index_version: str
    timing: Timing
    def __init__(self, hits: _Optional[_Iterable[_Union[Hit, _Mapping]]] = ..., index_version: _Optional[str] = ..., timing: _Optional[_Union[Timing, _Mapping]] = ...) -> None: ...

class Hit(_message.Message):
    __slots__ = ("id", "score", "uri", "caption", "metadata_json")
    ID_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    URI_FIELD_NUMBER: _ClassVar[int]
    CAPTION_FIELD_NUMBER: _ClassVar[int]
    METADATA_JSON_FIELD_NUMBER: _ClassVar[int]
    id: int
    score: float
    uri: str
    caption: str
    metadata_json: str
    def __init__(self, id: _Optional[int] = ..., score: _Optional[float] = ..., uri: _Optional[str] = ..., caption: _Optional[str] = ..., metadata_json: _Optional[str] = ...) -> None: ...

class Timing(_message.Message):
    __slots__ = ("total_ms", "queue_ms", "encode_ms", "search_ms")
    TOTAL_MS_FIELD_NUMBER: _ClassVar[int]
    QUEUE_MS_FIELD_NUMBER: _ClassVar[int]
    ENCODE_MS_FIELD_NUMBER: _ClassVar[int]
    SEARCH_MS_FIELD_NUMBER: _ClassVar[int]
    total_ms: float
    queue_ms: float
    encode_ms: float
    search_ms: float
    def __init__(self, total_ms: _Optional[float] = ..., queue_ms: _Optional[float] = ..., encode_ms: _Optional[float] = ..., search_ms: _Optional[float] = ...) -> None: ...

class BatchSearchRequest(_message.Message):
    __slots__ = ("queries",)
    QUERIES_FIELD_NUMBER: _ClassVar[int]
    queries: _containers.RepeatedCompositeFieldContainer[SearchRequest]
    def __init__(self, queries: _Optional[_Iterable[_Union[SearchRequest, _Mapping]]] = ...) -> None: ...

class BatchSearchResponse(_message.Message):
    __slots__ = ("results",)
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[SearchResponse]
    def __init__(self, results: _Optional[_Iterable[_Union[SearchResponse, _Mapping]]] = ...) -> None: ...

class EmbedRequest(_message.Message):
    __slots__ = ("texts", "images")
    TEXTS_FIELD_NUMBER: _ClassVar[int]
    IMAGES_FIELD_NUMBER: _ClassVar[int]
    texts: _containers.RepeatedScalarFieldContainer[str]
    images: _containers.RepeatedScalarFieldContainer[bytes]
    def __init__(self, texts: _Optional[_Iterable[str]] = ..., images: _Optional[_Iterable[bytes]] = ...) -> None: ...

class EmbedResponse(_message.Message):
    __slots__ = ("text_embeddings", "image_embeddings", "model", "pretrained")
    TEXT_EMBEDDINGS_FIELD_NUMBER: _ClassVar[int]
    IMAGE_EMBEDDINGS_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    PRETRAINED_FIELD_NUMBER: _ClassVar[int]
    text_embeddings: _containers.RepeatedCompositeFieldContainer[Vector]
    image_embeddings: _containers.RepeatedCompositeFieldContainer[Vector]
    model: str
    pretrained: str
    def __init__(self, text_embeddings: _Optional[_Iterable[_Union[Vector, _Mapping]]] = ..., image_embeddings: _Optional[_Iterable[_Union[Vector, _Mapping]]] = ..., model: _Optional[str] = ..., pretrained: _Optional[str] = ...) -> None: ...

class ClassifyRequest(_message.Message):
    __slots__ = ("image", "labels", "templates")
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    TEMPLATES_FIELD_NUMBER: _ClassVar[int]
    image: bytes
    labels: _containers.RepeatedScalarFieldContainer[str]
    templates: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, image: _Optional[bytes] = ..., labels: _Optional[_Iterable[str]] = ..., templates: _Optional[_Iterable[str]] = ...) -> None: ...

class ClassifyResponse(_message.Message):
    __slots__ = ("scores",)
    SCORES_FIELD_NUMBER: _ClassVar[int]
    scores: _containers.RepeatedCompositeFieldContainer[LabelScore]
    def __init__(self, scores: _Optional[_Iterable[_Union[LabelScore, _Mapping]]] = ...) -> None: ...

class LabelScore(_message.Message):
    __slots__ = ("label", "probability", "similarity")
    LABEL_FIELD_NUMBER: _ClassVar[int]
    PROBABILITY_FIELD_NUMBER: _ClassVar[int]
    SIMILARITY_FIELD_NUMBER: _ClassVar[int]
    label: str
    probability: float
    similarity: float
    def __init__(self, label: _Optional[str] = ..., probability: _Optional[float] = ..., similarity: _Optional[float] = ...) -> None: ...

class GetIndexInfoRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetIndexInfoResponse(_message.Message):
    __slots__ = ("model", "pretrained", "dim", "count", "index_version", "factory", "default_effort", "target_recall", "recall_at_10", "recall_at_1", "refused_version", "device")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    PRETRAINED_FIELD_NUMBER: _ClassVar[int]
    DIM_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    INDEX_VERSION_FIELD_NUMBER: _ClassVar[int]
    FACTORY_FIELD_NUMBER: _ClassVar[int]
    DEFAULT_EFFORT_FIELD_NUMBER: _ClassVar[int]
    TARGET_RECALL_FIELD_NUMBER: _ClassVar[int]
    RECALL_AT_10_FIELD_NUMBER: _ClassVar[int]
    RECALL_AT_1_FIELD_NUMBER: _ClassVar[int]
    REFUSED_VERSION_FIELD_NUMBER: _ClassVar[int]
    DEVICE_FIELD_NUMBER: _ClassVar[int]
    model: str
    pretrained: str
    dim: int
    count: int
    index_version: str
    factory: str
    default_effort: SearchEffort
    target_recall: float
    recall_at_10: float
    recall_at_1: float
    refused_version: RefusedVersion
    device: str
    def __init__(self, model: _Optional[str] = ..., pretrained: _Optional[str] = ..., dim: _Optional[int] = ..., count: _Optional[int] = ..., index_version: _Optional[str] = ..., factory: _Optional[str] = ..., default_effort: _Optional[_Union[SearchEffort, _Mapping]] = ..., target_recall: _Optional[float] = ..., recall_at_10: _Optional[float] = ..., recall_at_1: _Optional[float] = ..., refused_version: _Optional[_Union[RefusedVersion, _Mapping]] = ..., device: _Optional[str] = ...) -> None: ...

class RefusedVersion(_message.Message):
    __slots__ = ("index_version", "reason")
    INDEX_VERSION_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    index_version: str
    reason: str
    def __init__(self, index_version: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class ReloadIndexRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ReloadIndexResponse(_message.Message):
    __slots__ = ("index_version", "changed", "refused_version")
    INDEX_VERSION_FIELD_NUMBER: _ClassVar[int]
    CHANGED_FIELD_NUMBER: _ClassVar[int]
    REFUSED_VERSION_FIELD_NUMBER: _ClassVar[int]
    index_version: str
    changed: bool
    refused_version: RefusedVersion
    def __init__(self, index_version: _Optional[str] = ..., changed: _Optional[bool] = ..., refused_version: _Optional[_Union[RefusedVersion, _Mapping]] = ...) -> None: ...
