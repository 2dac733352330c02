"""The collection manifest: which shard files are complete, and what made their embeddings.

`SHARDS_DIR/manifest.json` is the source of truth. A file exists for readers once it is
listed here; the manifest is replaced atomically after each shard is durably written.
Files are events in `seq` order: an id's latest row (embedded, errored or deleted) wins.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, replace
from enum import StrEnum
from pathlib import Path

from clipsearch.atomic import write_text_atomically
from clipsearch.errors import ClipsearchError
from clipsearch.models import EmbeddingSpace, PreprocessConfig, preprocess_from_json

MANIFEST_NAME = "manifest.json"
FORMAT = "clipsearch-shards/1"


class ManifestError(ClipsearchError):
    """The manifest is unreadable, or belongs to embeddings this job cannot extend."""


class FileKind(StrEnum):
    EMBEDDINGS = "embeddings"  # part-NNNNN.parquet: embedded rows
    ERRORS = "errors"  # errors-NNNNN.parquet: skipped inputs and why
    DELETIONS = "deletions"  # deleted-NNNNN.parquet: ids no longer in the source


FILE_PREFIX = {
    FileKind.EMBEDDINGS: "part",
    FileKind.ERRORS: "errors",
    FileKind.DELETIONS: "deleted",
}


class VectorDtype(StrEnum):
    """How vectors are stored in shards."""

    FLOAT16 = "float16"  # the default: half the size, the same search quality
    FLOAT32 = "float32"


@dataclass(frozen=True)
class EmbeddingFormat:
    """What produced a collection's vectors; every shard of a collection shares it."""

    model: str
    pretrained: str
    dim: int
    preprocess: PreprocessConfig | None  # None: unknown (vectors made elsewhere)
    embedding_dtype: VectorDtype
    text_embeddings: bool

    @property
    def space(self) -> EmbeddingSpace:
        return EmbeddingSpace(self.model, self.pretrained, self.dim, self.preprocess)

    def mismatch(self, other: EmbeddingFormat) -> str | None:
        """Why vectors in `other` cannot join a collection of `self`, or None."""
        if why := self.space.mismatch(other.space):
            return f"its embeddings and this job's come from different models ({why})"
        if self.embedding_dtype != other.embedding_dtype:
            return f"it stores {self.embedding_dtype} vectors, this job {other.embedding_dtype}"
        if self.text_embeddings != other.text_embeddings:
            return "--embed-captions must be the same as when the collection was started"
        return None

    @staticmethod
    def from_json(raw: dict[str, object]) -> EmbeddingFormat:
        return EmbeddingFormat(
            model=str(raw["model"]),
            pretrained=str(raw["pretrained"]),
            dim=int(raw["dim"]),  # type: ignore[call-overload]
            preprocess=preprocess_from_json(raw.get("preprocess")),  # type: ignore[arg-type]
            embedding_dtype=VectorDtype(str(raw["embedding_dtype"])),
            text_embeddings=bool(raw["text_embeddings"]),
        )


@dataclass(frozen=True)
class ShardFile:
    kind: FileKind
    seq: int
    file: str
    rows: int
    sha256: str
    run: int


@dataclass(frozen=True)
class RunRecord:
    run: int
    source: str
    started: str
    finished: str | None = None
    embedded: int = 0
    unchanged: int = 0
    skipped: int = 0
    deleted: int = 0
    interrupted: bool = False  # stopped on a signal; the counts are what it committed


@dataclass(frozen=True)
class Manifest:
    embedding: EmbeddingFormat
    files: tuple[ShardFile, ...] = ()
    runs: tuple[RunRecord, ...] = ()
    clipsearch_version: str = ""
    format: str = FORMAT
    next_seq: int = 0

    def files_of(self, kind: FileKind) -> list[ShardFile]:
        return [f for f in self.files if f.kind is kind]

    def with_file(self, entry: ShardFile) -> Manifest:
        return replace(self, files=(*self.files, entry), next_seq=max(self.next_seq, entry.seq + 1))

    def with_run(self, record: RunRecord) -> Manifest:
        others = tuple(r for r in self.runs if r.run != record.run)
        return replace(self, runs=(*others, record))

    def next_run(self) -> int:
        return max((r.run for r in self.runs), default=0) + 1


def file_name(kind: FileKind, seq: int) -> str:
    return f"{FILE_PREFIX[kind]}-{seq:05d}.parquet"


def read_manifest(folder: Path) -> Manifest | None:
    path = folder / MANIFEST_NAME
    if not path.exists():
        return None
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
        if raw.get("format") != FORMAT:
            raise ManifestError(f"{path}: format {raw.get('format')!r}, expected {FORMAT!r}")
        return Manifest(
            embedding=EmbeddingFormat.from_json(raw["embedding"]),
            files=tuple(
                ShardFile(**{**f, "kind": FileKind(f["kind"])}) for f in raw.get("files", [])
            ),
            runs=tuple(RunRecord(**r) for r in raw.get("runs", [])),
            clipsearch_version=raw.get("clipsearch_version", ""),
            format=raw["format"],
            next_seq=int(raw.get("next_seq", 0)),
        )
    except (ValueError, KeyError, TypeError) as err:
        raise ManifestError(f"{path} is not a valid clipsearch manifest: {err}") from err


def write_manifest(folder: Path, manifest: Manifest) -> None:
    text = json.dumps(asdict(manifest), indent=1, sort_keys=True)
    write_text_atomically(folder / MANIFEST_NAME, text + "\n")
