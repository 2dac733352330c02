"""The GPU/CPU model stage: a decoded batch to vectors."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from clipsearch.encoder import ClipEncoder
from clipsearch.indexer.embed.decode import DecodedBatch, DecodedItem


@dataclass(frozen=True)
class EncodedBatch:
    items: list[DecodedItem]  # every item, failed ones included, in pending order
    vectors: np.ndarray  # one row per decoded item
    text_vectors: np.ndarray | None  # one row per captioned decoded item
    captioned: list[bool]


def encode_batch(encoder: ClipEncoder, batch: DecodedBatch) -> EncodedBatch:
    vectors = encoder.encode_pixels(batch.pixels)
    text = encoder.encode_tokens(batch.tokens) if batch.tokens is not None else None
    return EncodedBatch(batch.items, vectors, text, batch.captioned)
