"""The text queries a build measures recall with: real text embeddings of the collection's
own model, never stand-ins.

- The collection's caption embeddings, when it has them (`embed --embed-captions`): each
  caption's own image is a known true match, so how often text search finds it is
  measured too.
- Else the model's text tower on a fixed prompt set: PROMPT_TEMPLATE over the names in
  prompts.txt (common objects, animals, people and scenes), shipped with the package.
  The model is loaded here, and torch with it, only for this step.
- Else (the model cannot be loaded on this host) none, and why: the build then gives
  text queries the image queries' settings and says so.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from importlib import resources

import numpy as np

from clipsearch.collection.manifest import EmbeddingFormat
from clipsearch.errors import ClipsearchError
from clipsearch.index.version import CaptionIndex
from clipsearch.types import QuerySource

log = logging.getLogger(__name__)
PROMPT_TEMPLATE = "a photo of a {}."  # CLIP's own zero-shot template
PROMPTS_FILE = "prompts.txt"


@dataclass(frozen=True, eq=False)
class TextQueries:
    source: QuerySource  # CAPTIONS or PROMPTS
    vectors: np.ndarray  # (queries, dim) float32 unit vectors
    own_rows: np.ndarray | None = None  # captions: the image row each belongs to


@dataclass(frozen=True)
class Unavailable:
    reason: str


def prompt_names() -> list[str]:
    text = (
        resources.files("clipsearch.indexer.build")
        .joinpath(PROMPTS_FILE)
        .read_text(encoding="utf-8")
    )
    lines = (line.strip() for line in text.splitlines())
    return [line for line in lines if line and not line.startswith("#")]


def prompts() -> list[str]:
    """The prompt set, in its fixed order."""
    return [PROMPT_TEMPLATE.format(name) for name in prompt_names()]


def from_captions(captions: CaptionIndex, count: int, seed: int = 0) -> TextQueries:
    """Up to `count` captions, sampled, with their images."""
    rng = np.random.default_rng(seed)
    total = len(captions.vectors)
    rows = np.sort(rng.choice(total, size=min(count, total), replace=False))
    vectors = np.asarray(captions.vectors[rows], dtype=np.float32)
    return TextQueries(QuerySource.CAPTIONS, vectors, np.asarray(captions.item_rows)[rows])


def from_prompts(fmt: EmbeddingFormat, count: int, seed: int = 0) -> TextQueries | Unavailable:
    """Up to `count` prompts of the set, sampled, through the text tower of the model the
    shards name. The weights must be on this host: a build downloads nothing."""
    texts = prompts()
    if count < len(texts):
        rng = np.random.default_rng(seed)
        texts = [texts[i] for i in np.sort(rng.choice(len(texts), size=count, replace=False))]
    try:
        # Imported here: torch and open_clip load only for a build that needs them.
        from clipsearch.encoder import ModelSpec, load_encoder

        spec = (
            ModelSpec(pretrained=fmt.model)
            if fmt.model.startswith("hf-hub:")
            else ModelSpec(model=fmt.model, pretrained=fmt.pretrained)
        )
        encoder = load_encoder(spec, allow_download=False)
    except (ClipsearchError, ImportError, OSError, RuntimeError, ValueError) as err:
        # Without its last full stop: the reason is quoted inside sentences.
        return Unavailable(f"{fmt.space.describe()} cannot be loaded here: {str(err).rstrip('.')}")
    if encoder.dim != fmt.dim:
        return Unavailable(
            f"{fmt.space.describe()} loaded here makes {encoder.dim}-d vectors, the shards "
            f"hold {fmt.dim}-d ones"
        )
    log.info("embedding %d prompts with %s", len(texts), encoder.info.weights)
    return TextQueries(QuerySource.PROMPTS, encoder.encode_texts(texts))
