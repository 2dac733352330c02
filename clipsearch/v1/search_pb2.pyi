from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Target(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    TARGET_UNSPECIFIED: _ClassVar[Target]
    TARGET_IMAGES: _ClassVar[Target]
    TARGET_CAPTIONS: _ClassVar[Target]

class QuerySource(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    QUERY_SOURCE_UNSPECIFIED: _ClassVar[QuerySource]
    QUERY_SOURCE_HELD_OUT: _ClassVar[QuerySource]
    QUERY_SOURCE_IMAGES: _ClassVar[QuerySource]
    QUERY_SOURCE_CAPTIONS: _ClassVar[QuerySource]
    QUERY_SOURCE_PROMPTS: _ClassVar[QuerySource]

class FieldType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    FIELD_TYPE_UNSPECIFIED: _ClassVar[FieldType]
    FIELD_TYPE_STRING: _ClassVar[FieldType]
    FIELD_TYPE_NUMBER: _ClassVar[FieldType]
    FIELD_TYPE_BOOL: _ClassVar[FieldType]
    FIELD_TYPE_DATE: _ClassVar[FieldType]
TARGET_UNSPECIFIED: Target
TARGET_IMAGES: Target
TARGET_CAPTIONS: Target
QUERY_SOURCE_UNSPECIFIED: QuerySource
QUERY_SOURCE_HELD_OUT: QuerySource
QUERY_SOURCE_IMAGES: QuerySource
QUERY_SOURCE_CAPTIONS: QuerySource
QUERY_SOURCE_PROMPTS: QuerySource
FIELD_TYPE_UNSPECIFIED: FieldType
FIELD_TYPE_STRING: FieldType
FIELD_TYPE_NUMBER: FieldType
FIELD_TYPE_BOOL: FieldType
FIELD_TYPE_DATE: FieldType

class SearchRequest(_message.Message):
    __slots__ = ("text", "image", "embedding", "item_id", "image_url", "top_k", "effort", "omit_metadata", "filter", "min_score", "page_token", "collapse", "target", "index")
    TEXT_FIELD_NUMBER: _ClassVar[int]
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    EMBEDDING_FIELD_NUMBER: _ClassVar[int]
    ITEM_ID_FIELD_NUMBER: _ClassVar[int]
    IMAGE_URL_FIELD_NUMBER: _ClassVar[int]
    TOP_K_FIELD_NUMBER: _ClassVar[int]
    EFFORT_FIELD_NUMBER: _ClassVar[int]
    OMIT_METADATA_FIELD_NUMBER: _ClassVar[int]
    FILTER_FIELD_NUMBER: _ClassVar[int]
    MIN_SCORE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    COLLAPSE_FIELD_NUMBER: _ClassVar[int]
    TARGET_FIELD_NUMBER: _ClassVar[int]
    INDEX_FIELD_NUMBER: _ClassVar[int]
    text: str
    image: bytes
    embedding: Vector
    item_id: int
    image_url: str
    top_k: int
    effort: SearchEffort
    omit_metadata: bool
    filter: Filter
    min_score: float
    page_token: str
    collapse: Collapse
    target: Target
    index: str
    def __init__(self, text: _Optional[str] = ..., image: _Optional[bytes] = ..., embedding: _Optional[_Union[Vector, _Mapping]] = ..., item_id: _Optional[int] = ..., image_url: _Optional[str] = ..., top_k: _Optional[int] = ..., effort: _Optional[_Union[SearchEffort, _Mapping]] = ..., omit_metadata: _Optional[bool] = ..., filter: _Optional[_Union[Filter, _Mapping]] = ..., min_score: _Optional[float] = ..., page_token: _Optional[str] = ..., collapse: _Optional[_Union[Collapse, _Mapping]] = ..., target: _Optional[_Union[Target, str]] = ..., index: _Optional[str] = ...) -> None: ...

class Collapse(_message.Message):
    __slots__ = ("threshold", "with_ids")
    THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    WITH_IDS_FIELD_NUMBER: _ClassVar[int]
    threshold: float
    with_ids: bool
    def __init__(self, threshold: _Optional[float] = ..., with_ids: _Optional[bool] = ...) -> None: ...

class Filter(_message.Message):
    __slots__ = ("condition", "all", "any")
    CONDITION_FIELD_NUMBER: _ClassVar[int]
    ALL_FIELD_NUMBER: _ClassVar[int]
    ANY_FIELD_NUMBER: _ClassVar[int]
    NOT_FIELD_NUMBER: _ClassVar[int]
    condition: Condition
    all: FilterList
    any: FilterList
    def __init__(self, condition: _Optional[_Union[Condition, _Mapping]] = ..., all: _Optional[_Union[FilterList, _Mapping]] = ..., any: _Optional[_Union[FilterList, _Mapping]] = ..., **kwargs) -> None: ...

class FilterList(_message.Message):
    __slots__ = ("filters",)
    FILTERS_FIELD_NUMBER: _ClassVar[int]
    filters: _containers.RepeatedCompositeFieldContainer[Filter]
    def __init__(self, filters: _Optional[_Iterable[_Union[Filter, _Mapping]]] = ...) -> None: ...

class Condition(_message.Message):
    __slots__ = ("field", "equals", "any_of", "none_of", "range", "exists", "prefix")
    FIELD_FIELD_NUMBER: _ClassVar[int]
    EQUALS_FIELD_NUMBER: _ClassVar[int]
    ANY_OF_FIELD_NUMBER: _ClassVar[int]
    NONE_OF_FIELD_NUMBER: _ClassVar[int]
    RANGE_FIELD_NUMBER: _ClassVar[int]
    EXISTS_FIELD_NUMBER: _ClassVar[int]
    PREFIX_FIELD_NUMBER: _ClassVar[int]
    field: str
    equals: Value
    any_of: ValueList
    none_of: ValueList
    range: Range
    exists: bool
    prefix: str
    def __init__(self, field: _Optional[str] = ..., equals: _Optional[_Union[Value, _Mapping]] = ..., any_of: _Optional[_Union[ValueList, _Mapping]] = ..., none_of: _Optional[_Union[ValueList, _Mapping]] = ..., range: _Optional[_Union[Range, _Mapping]] = ..., exists: _Optional[bool] = ..., prefix: _Optional[str] = ...) -> None: ...

class Value(_message.Message):
    __slots__ = ("string_value", "number_value", "bool_value")
    STRING_VALUE_FIELD_NUMBER: _ClassVar[int]
    NUMBER_VALUE_FIELD_NUMBER: _ClassVar[int]
    BOOL_VALUE_FIELD_NUMBER: _ClassVar[int]
    string_value: str
    number_value: float
    bool_value: bool
    def __init__(self, string_value: _Optional[str] = ..., number_value: _Optional[float] = ..., bool_value: _Optional[bool] = ...) -> None: ...

class ValueList(_message.Message):
    __slots__ = ("values",)
    VALUES_FIELD_NUMBER: _ClassVar[int]
    values: _containers.RepeatedCompositeFieldContainer[Value]
    def __init__(self, values: _Optional[_Iterable[_Union[Value, _Mapping]]] = ...) -> None: ...

class Range(_message.Message):
    __slots__ = ("gt", "gte", "lt", "lte")
    GT_FIELD_NUMBER: _ClassVar[int]
    GTE_FIELD_NUMBER: _ClassVar[int]
    LT_FIELD_NUMBER: _ClassVar[int]
    LTE_FIELD_NUMBER: _ClassVar[int]
    gt: Value
    gte: Value
    lt: Value
    lte: Value
    def __init__(self, gt: _Optional[_Union[Value, _Mapping]] = ..., gte: _Optional[_Union[Value, _Mapping]] = ..., lt: _Optional[_Union[Value, _Mapping]] = ..., lte: _Optional[_Union[Value, _Mapping]] = ...) -> None: ...

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
    __slots__ = ("hits", "index_version", "timing", "next_page_token")
    HITS_FIELD_NUMBER: _ClassVar[int]
    INDEX_VERSION_FIELD_NUMBER: _ClassVar[int]
    TIMING_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    hits: _containers.RepeatedCompositeFieldContainer[Hit]
    index_version: str
    timing: Timing
    next_page_token: str
    def __init__(self, hits: _Optional[_Iterable[_Union[Hit, _Mapping]]] = ..., index_version: _Optional[str] = ..., timing: _Optional[_Union[Timing, _Mapping]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class Hit(_message.Message):
    __slots__ = ("id", "score", "uri", "caption", "metadata_json", "duplicates", "duplicate_ids")
    ID_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    URI_FIELD_NUMBER: _ClassVar[int]
    CAPTION_FIELD_NUMBER: _ClassVar[int]
    METADATA_JSON_FIELD_NUMBER: _ClassVar[int]
    DUPLICATES_FIELD_NUMBER: _ClassVar[int]
    DUPLICATE_IDS_FIELD_NUMBER: _ClassVar[int]
    id: int
    score: float
    uri: str
    caption: str
    metadata_json: str
    duplicates: int
    duplicate_ids: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, id: _Optional[int] = ..., score: _Optional[float] = ..., uri: _Optional[str] = ..., caption: _Optional[str] = ..., metadata_json: _Optional[str] = ..., duplicates: _Optional[int] = ..., duplicate_ids: _Optional[_Iterable[int]] = ...) -> None: ...

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
    __slots__ = ("texts", "images", "index")
    TEXTS_FIELD_NUMBER: _ClassVar[int]
    IMAGES_FIELD_NUMBER: _ClassVar[int]
    INDEX_FIELD_NUMBER: _ClassVar[int]
    texts: _containers.RepeatedScalarFieldContainer[str]
    images: _containers.RepeatedScalarFieldContainer[bytes]
    index: str
    def __init__(self, texts: _Optional[_Iterable[str]] = ..., images: _Optional[_Iterable[bytes]] = ..., index: _Optional[str] = ...) -> None: ...

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
    __slots__ = ("image", "labels", "templates", "index")
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    TEMPLATES_FIELD_NUMBER: _ClassVar[int]
    INDEX_FIELD_NUMBER: _ClassVar[int]
    image: bytes
    labels: _containers.RepeatedScalarFieldContainer[str]
    templates: _containers.RepeatedScalarFieldContainer[str]
    index: str
    def __init__(self, image: _Optional[bytes] = ..., labels: _Optional[_Iterable[str]] = ..., templates: _Optional[_Iterable[str]] = ..., index: _Optional[str] = ...) -> None: ...

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
    __slots__ = ("index",)
    INDEX_FIELD_NUMBER: _ClassVar[int]
    index: str
    def __init__(self, index: _Optional[str] = ...) -> None: ...

class GetIndexInfoResponse(_message.Message):
    __slots__ = ("model", "pretrained", "dim", "count", "index_version", "factory", "default_effort", "target_recall", "recall_at_10", "recall_at_1", "refused_version", "device", "fields", "captions", "index", "served_indexes", "text_defaults")
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
    FIELDS_FIELD_NUMBER: _ClassVar[int]
    CAPTIONS_FIELD_NUMBER: _ClassVar[int]
    INDEX_FIELD_NUMBER: _ClassVar[int]
    SERVED_INDEXES_FIELD_NUMBER: _ClassVar[int]
    TEXT_DEFAULTS_FIELD_NUMBER: _ClassVar[int]
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
    fields: _containers.RepeatedCompositeFieldContainer[FieldInfo]
    captions: bool
    index: str
    served_indexes: _containers.RepeatedScalarFieldContainer[str]
    text_defaults: MeasuredDefaults
    def __init__(self, model: _Optional[str] = ..., pretrained: _Optional[str] = ..., dim: _Optional[int] = ..., count: _Optional[int] = ..., index_version: _Optional[str] = ..., factory: _Optional[str] = ..., default_effort: _Optional[_Union[SearchEffort, _Mapping]] = ..., target_recall: _Optional[float] = ..., recall_at_10: _Optional[float] = ..., recall_at_1: _Optional[float] = ..., refused_version: _Optional[_Union[RefusedVersion, _Mapping]] = ..., device: _Optional[str] = ..., fields: _Optional[_Iterable[_Union[FieldInfo, _Mapping]]] = ..., captions: _Optional[bool] = ..., index: _Optional[str] = ..., served_indexes: _Optional[_Iterable[str]] = ..., text_defaults: _Optional[_Union[MeasuredDefaults, _Mapping]] = ...) -> None: ...

class MeasuredDefaults(_message.Message):
    __slots__ = ("effort", "recall_at_10", "recall_at_1", "source", "own_image_at_10", "own_image_at_10_exact")
    EFFORT_FIELD_NUMBER: _ClassVar[int]
    RECALL_AT_10_FIELD_NUMBER: _ClassVar[int]
    RECALL_AT_1_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    OWN_IMAGE_AT_10_FIELD_NUMBER: _ClassVar[int]
    OWN_IMAGE_AT_10_EXACT_FIELD_NUMBER: _ClassVar[int]
    effort: SearchEffort
    recall_at_10: float
    recall_at_1: float
    source: QuerySource
    own_image_at_10: float
    own_image_at_10_exact: float
    def __init__(self, effort: _Optional[_Union[SearchEffort, _Mapping]] = ..., recall_at_10: _Optional[float] = ..., recall_at_1: _Optional[float] = ..., source: _Optional[_Union[QuerySource, str]] = ..., own_image_at_10: _Optional[float] = ..., own_image_at_10_exact: _Optional[float] = ...) -> None: ...

class FieldInfo(_message.Message):
    __slots__ = ("name", "type", "list")
    NAME_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    LIST_FIELD_NUMBER: _ClassVar[int]
    name: str
    type: FieldType
    list: bool
    def __init__(self, name: _Optional[str] = ..., type: _Optional[_Union[FieldType, str]] = ..., list: _Optional[bool] = ...) -> None: ...

class RefusedVersion(_message.Message):
    __slots__ = ("index_version", "reason")
    INDEX_VERSION_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    index_version: str
    reason: str
    def __init__(self, index_version: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class ReloadIndexRequest(_message.Message):
    __slots__ = ("index",)
    INDEX_FIELD_NUMBER: _ClassVar[int]
    index: str
    def __init__(self, index: _Optional[str] = ...) -> None: ...

class ReloadIndexResponse(_message.Message):
    __slots__ = ("index_version", "changed", "refused_version")
    INDEX_VERSION_FIELD_NUMBER: _ClassVar[int]
    CHANGED_FIELD_NUMBER: _ClassVar[int]
    REFUSED_VERSION_FIELD_NUMBER: _ClassVar[int]
    index_version: str
    changed: bool
    refused_version: RefusedVersion
    def __init__(self, index_version: _Optional[str] = ..., changed: _Optional[bool] = ..., refused_version: _Optional[_Union[RefusedVersion, _Mapping]] = ...) -> None: ...
