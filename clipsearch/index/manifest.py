"""The index-version format: the folder layout, the manifest, and the CURRENT pointer.

INDEX_DIR/CURRENT                  the name of the version being served (atomically replaced)
INDEX_DIR/versions/vNNNNNN/
  manifest.json                    IndexManifest
  index.faiss [+ index.ivfdata]    the FAISS index; its ids are row numbers
  ids.npy                          row -> item id (int64; -1 for a removed row)
  vectors.npy                      row -> float16 vector, memory-mapped, for exact re-ranking
  records.jsonl, records.offsets.npy   row -> uri, caption, metadata, width, height
  fields.parquet                   row -> the fields filters test (clipsearch.index.fields)
  captions.faiss [+ captions.ivfdata]  with caption embeddings: a FAISS index over the
                                   captions; its ids are caption rows
  captions.vectors.npy             caption row -> float16 vector, for exact re-ranking
  captions.rows.npy                caption row -> the row of its item (int64)
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from clipsearch.checksum import file_sha256
from clipsearch.models import EmbeddingSpace, PreprocessConfig, preprocess_from_json
from clipsearch.types import FieldInfo, FieldType, QueryKind, QuerySource

INDEX_FORMAT = "clipsearch-index/1"
INDEX_FILE = "index.faiss"
IVFDATA_FILE = "index.ivfdata"
IDS_FILE = "ids.npy"
VECTORS_FILE = "vectors.npy"
FIELDS_FILE = "fields.parquet"
CAPTIONS_INDEX_FILE = "captions.faiss"
CAPTIONS_IVFDATA_FILE = "captions.ivfdata"
CAPTIONS_VECTORS_FILE = "captions.vectors.npy"
CAPTIONS_ROWS_FILE = "captions.rows.npy"
MANIFEST_FILE = "manifest.json"
CURRENT_FILE = "CURRENT"
VERSIONS_DIR = "versions"
REMOVED = -1


class Metric(StrEnum):
    """What search scores mean: every index ranks (and re-ranks) by inner product, which
    for unit vectors is cosine similarity."""

    INNER_PRODUCT = "inner_product"


@dataclass(frozen=True)
class CurvePoint:
    nprobe: int
    candidates: int  # re-ranked per query; 0 for exact search
    recall_at_1: float
    recall_at_10: float
    queries_per_second: float  # single query, single thread
    # Queries with a known true match (captions: their own image): how often it is among
    # the 10 hits. None for other queries.
    own_image_at_10: float | None = None


def reached_point(curve: list[CurvePoint], nprobe: int, candidates: int) -> CurvePoint | None:
    """The measured point of these search settings, if the curve has it."""
    return next((p for p in curve if (p.nprobe, p.candidates) == (nprobe, candidates)), None)


@dataclass(frozen=True)
class MeasuredDefaults:
    """One kind of query's default search settings on one index, and the measurement
    behind them: the cheapest settings that reached the target on `eval_queries` queries
    from `source`. Not measured: the other kind's settings, an empty curve, and why."""

    source: QuerySource
    default_nprobe: int
    rerank_candidates: int
    recall_curve: list[CurvePoint]
    eval_queries: int
    # Queries with a known true match (captions: their own image): how often exact search
    # puts it among the 10 nearest, the ceiling of CurvePoint.own_image_at_10.
    own_image_at_10_exact: float | None = None
    note: str = ""  # why it was not measured

    @property
    def measured(self) -> bool:
        return self.source is not QuerySource.NOT_MEASURED

    @property
    def reached(self) -> CurvePoint | None:
        return reached_point(self.recall_curve, self.default_nprobe, self.rerank_candidates)

    def copied(self, note: str) -> MeasuredDefaults:
        """These settings, for a kind of query that was not measured."""
        return MeasuredDefaults(
            QuerySource.NOT_MEASURED, self.default_nprobe, self.rerank_candidates, [], 0,
            note=note,
        )  # fmt: skip

    @staticmethod
    def from_json(raw: dict[str, Any]) -> MeasuredDefaults:
        """From a manifest's decoded JSON (what to_json wrote of it)."""
        curve = [CurvePoint(**p) for p in raw["recall_curve"]]
        return MeasuredDefaults(
            **{**raw, "recall_curve": curve, "source": QuerySource(raw["source"])}
        )


# Why a version built before per-kind defaults has no text (or caption image) figures.
BUILT_BEFORE_KINDS = "built before text and image queries were measured apart"


@dataclass(frozen=True)
class CaptionsManifest:
    """The captions of a version's items, indexed for Target.CAPTIONS: planned, built
    and measured as the images are. The top-level settings and curve are those of text
    queries, measured on held-out captions (text is the natural query of a caption index);
    `image_queries` those of image queries, measured on the version's image vectors."""

    count: int  # captions indexed: the live items that have one
    factory: str
    nlist: int
    rerank_candidates: int
    default_nprobe: int
    recall_curve: list[CurvePoint]
    eval_queries: int
    image_queries: MeasuredDefaults | None = None  # None: built before it was measured

    @property
    def reached(self) -> CurvePoint | None:
        return reached_point(self.recall_curve, self.default_nprobe, self.rerank_candidates)

    def defaults(self, kind: QueryKind) -> MeasuredDefaults:
        text = MeasuredDefaults(
            QuerySource.HELD_OUT, self.default_nprobe, self.rerank_candidates,
            self.recall_curve, self.eval_queries,
        )  # fmt: skip
        if kind is QueryKind.TEXT:
            return text
        return self.image_queries or text.copied(BUILT_BEFORE_KINDS)


@dataclass(frozen=True)
class SourceShard:
    file: str
    sha256: str
    rows: int


@dataclass(frozen=True)
class IndexManifest:
    version: str
    model: str
    pretrained: str
    dim: int
    preprocess: PreprocessConfig | None  # None: unknown (vectors made elsewhere)
    factory: str
    count: int  # vectors searchable (removed rows excluded)
    rows: int  # rows in the index, removed ones included
    nlist: int
    # The defaults and curve of image queries (image, image URL, item, vector), measured
    # on held-out collection vectors; text queries have their own in `text_queries`.
    rerank_candidates: int  # 0: results come straight from the index
    default_nprobe: int
    target_recall: float
    recall_curve: list[CurvePoint]
    eval_queries: int
    shards_dir: str
    source_shards: list[SourceShard]
    build_seconds: float
    created: str
    clipsearch_version: str
    metric: Metric = Metric.INNER_PRODUCT
    format: str = INDEX_FORMAT
    parent_version: str | None = None
    on_disk: bool = False
    files: dict[str, str] = field(default_factory=dict)  # file name -> sha256, all but this
    # What filters can test (the columns of fields.parquet), and the metadata keys they
    # cannot, with why. Both empty in versions built before filters.
    fields: list[FieldInfo] = field(default_factory=list)
    unfilterable: dict[str, str] = field(default_factory=dict)
    # None: no captions indexed (the shards hold no caption embeddings, or the version
    # was built before caption search).
    captions: CaptionsManifest | None = None
    # Text queries' defaults, measured on caption embeddings or the model's prompts; not
    # measured (the image settings, with why) when the model could not be loaded. None:
    # built before per-kind defaults (text queries get the image settings).
    text_queries: MeasuredDefaults | None = None

    @property
    def space(self) -> EmbeddingSpace:
        return EmbeddingSpace(self.model, self.pretrained, self.dim, self.preprocess)

    @property
    def reached(self) -> CurvePoint | None:
        """The measured point of the default search settings."""
        return reached_point(self.recall_curve, self.default_nprobe, self.rerank_candidates)

    def defaults(self, kind: QueryKind) -> MeasuredDefaults:
        """The default search settings of a kind of query on the images."""
        image = MeasuredDefaults(
            QuerySource.HELD_OUT, self.default_nprobe, self.rerank_candidates,
            self.recall_curve, self.eval_queries,
        )  # fmt: skip
        if kind is QueryKind.IMAGE:
            return image
        return self.text_queries or image.copied(BUILT_BEFORE_KINDS)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1, sort_keys=True) + "\n"

    @staticmethod
    def from_json(text: str) -> IndexManifest:
        raw = json.loads(text)
        if raw.get("format") != INDEX_FORMAT:
            raise ValueError(f"format {raw.get('format')!r}, expected {INDEX_FORMAT!r}")
        raw["recall_curve"] = [CurvePoint(**p) for p in raw["recall_curve"]]
        raw["source_shards"] = [SourceShard(**s) for s in raw["source_shards"]]
        raw.pop("extra", None)  # written by versions before 0.2, never used
        raw["preprocess"] = preprocess_from_json(raw.get("preprocess"))
        raw["metric"] = Metric(raw.get("metric", Metric.INNER_PRODUCT))
        raw["fields"] = [
            FieldInfo(f["name"], FieldType(f["type"]), bool(f.get("list", False)))
            for f in raw.get("fields", [])
        ]
        if (captions := raw.get("captions")) is not None:
            curve = [CurvePoint(**p) for p in captions["recall_curve"]]
            image = captions.get("image_queries")
            raw["captions"] = CaptionsManifest(**{
                **captions, "recall_curve": curve,
                "image_queries": MeasuredDefaults.from_json(image) if image else None,
            })  # fmt: skip
        if (text := raw.get("text_queries")) is not None:
            raw["text_queries"] = MeasuredDefaults.from_json(text)
        return IndexManifest(**raw)


def file_checksums(folder: Path) -> dict[str, str]:
    """sha256 of every file of a version but its manifest, for verifying it at load."""
    return {
        p.name: file_sha256(p)
        for p in sorted(folder.iterdir())
        if p.is_file() and p.name != MANIFEST_FILE
    }


def current_version(index_dir: Path) -> Path | None:
    pointer = index_dir / CURRENT_FILE
    if not pointer.exists():
        return None
    return index_dir / VERSIONS_DIR / pointer.read_text().strip()
