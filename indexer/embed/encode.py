"""The GPU/CPU model stage: a decoded batch to vectors."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from clipsearch.encoder import ClipEncoder, PendingVectors
from clipsearch.indexer.embed.decode import DecodedBatch, DecodedItem


@dataclass(frozen=True)
class EncodedBatch:
    items: list[DecodedItem]  # every item, failed ones included, in pending order
    vectors: np.ndarray  # one row per decoded item
    text_vectors: np.ndarray | None  # one row per captioned decoded item
    captioned: list[bool]  # per decoded item: does it have a row in `text_vectors`

    def split(self, count: int) -> tuple[EncodedBatch, EncodedBatch]:
        """The first `count` items and the rest, each with its own vectors."""
        decoded = sum(1 for item in self.items[:count] if item.failure is None)
        texts = sum(self.captioned[:decoded])
        head_text = tail_text = None
        if self.text_vectors is not None:
            head_text, tail_text = self.text_vectors[:texts], self.text_vectors[texts:]
        return (
            EncodedBatch(
                self.items[:count], self.vectors[:decoded], head_text, self.captioned[:decoded]
            ),
            EncodedBatch(
                self.items[count:], self.vectors[decoded:], tail_text, self.captioned[decoded:]
            ),
        )


@dataclass(frozen=True)
class PendingBatch:
    """A batch whose vectors are still being computed (on a GPU); `result()` waits."""

    batch: DecodedBatch
    vectors: PendingVectors
    text_vectors: PendingVectors | None

    def result(self) -> EncodedBatch:
        text = self.text_vectors.result() if self.text_vectors is not None else None
        return EncodedBatch(self.batch.items, self.vectors.result(), text, self.batch.captioned)


def start_batch(encoder: ClipEncoder, batch: DecodedBatch) -> PendingBatch:
    """Queue a batch's encoding; on CUDA this returns before the GPU is done."""
    vectors = encoder.start_pixels(batch.pixels)
    text = encoder.start_tokens(batch.tokens) if batch.tokens is not None else None
    return PendingBatch(batch, vectors, text)
