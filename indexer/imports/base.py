"""What `clipsearch import` reads: the kinds of source, and the error that names a file."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from clipsearch.errors import ClipsearchError


class ImportSourceError(ClipsearchError):
    """The source cannot be imported as it is: missing, malformed, or not what it claims."""


class SourceKind(StrEnum):
    AUTO = "auto"
    CLIP_RETRIEVAL = (
        "clip-retrieval"  # img_emb/, text_emb/, metadata/ of `clip-retrieval inference`
    )
    NPY = "npy"  # .npy matrices, as autofaiss reads them
    PARQUET = "parquet"  # a table with an embedding column


@dataclass(frozen=True)
class ImportSource:
    """`clipsearch import SOURCE --source-format ... --embedding-column ... --uri-column ...`"""

    path: str  # a folder, a file or a glob
    kind: SourceKind = SourceKind.AUTO
    embedding_column: str | None = None
    uri_column: str | None = None


# Guessed in this order unless the flags name them. Uri and caption columns are the ones
# `clipsearch embed` guesses in a table, so the same table means the same uris to both.
EMBEDDING_COLUMNS = ("embedding", "image_embedding", "emb", "vector")
TEXT_EMBEDDING_COLUMNS = ("text_embedding", "text_emb")
URI_COLUMNS = ("image_path", "path", "filepath", "file", "uri", "url")
CAPTION_COLUMNS = ("caption", "text", "title")
