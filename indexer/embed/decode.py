"""The CPU stage of embedding: read an item's bytes, hash, decode, preprocess, tokenize.

Runs in worker processes (local engine) or Ray tasks; holds no model, only the
preprocessing transform and the tokenizer.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import torch
from PIL import Image

from clipsearch.collection.ids import content_hash
from clipsearch.encoder import DecodeFailure, ImageDecodeError, decode_for_model
from clipsearch.indexer.embed.plan import PlannedItem
from clipsearch.indexer.embed.sources import Reader, read_text


@dataclass(slots=True)
class DecodedItem:
    """One item after the CPU stage: ready to encode, or failed with a reason."""

    position: int  # index into the run's pending list
    pixels: torch.Tensor | None
    tokens: torch.Tensor | None
    width: int = 0
    height: int = 0
    content_hash: str = ""
    caption: str | None = None
    metadata: str | None = None
    failure: DecodeFailure | None = None
    detail: str = ""


@dataclass(frozen=True)
class Decoder:
    """Picklable: the transform and tokenizer are plain callables without the model.
    JPEGs are decoded at the smallest scale that still gives `min_side` pixels on their
    shorter side (0: always in full)."""

    transform: Callable[[Image.Image], torch.Tensor]
    tokenizer: Callable[[Sequence[str]], torch.Tensor] | None
    max_pixels: int
    min_side: int = 0

    def __call__(self, position: int, planned: PlannedItem, reader: Reader) -> DecodedItem:
        item = planned.item
        try:
            data = item.image.read(reader)
            caption = (read_text(item.caption, reader) or "").strip() or None
            metadata = _as_json(read_text(item.metadata, reader))
        except OSError as err:
            return _failed(position, DecodeFailure.UNREADABLE, f"{type(err).__name__}: {err}")
        try:
            decoded = decode_for_model(data, self.min_side, item.uri, self.max_pixels)
        except ImageDecodeError as err:
            return _failed(position, err.reason, err.detail)
        tokens = None
        if self.tokenizer is not None and caption:
            tokens = self.tokenizer([caption])[0]
        return DecodedItem(
            position=position,
            pixels=self.transform(decoded.image),
            tokens=tokens,
            width=decoded.width,
            height=decoded.height,
            content_hash=content_hash(data),
            caption=caption,
            metadata=metadata,
        )


@dataclass(frozen=True)
class DecodedBatch:
    items: list[DecodedItem]  # every item of the batch, failed ones included
    pixels: torch.Tensor  # one row per decoded item, in order
    tokens: torch.Tensor | None  # one row per decoded item with a caption, in order
    captioned: list[bool]  # per decoded item: does it have a row in `tokens`

    def pin_memory(self) -> DecodedBatch:
        """Called by the DataLoader's pinning thread (a dataclass is not pinned otherwise),
        so the copy to the GPU can run asynchronously."""
        tokens = self.tokens.pin_memory() if self.tokens is not None else None
        return replace(self, pixels=self.pixels.pin_memory(), tokens=tokens)


def collate(items: list[DecodedItem], half: bool = False) -> DecodedBatch:
    """Stack what decoded; fp16 halves host-to-GPU traffic (pinned by the DataLoader)."""
    good = [i for i in items if i.pixels is not None]
    pixels = torch.stack([i.pixels for i in good]) if good else torch.empty(0)  # type: ignore[misc]
    captioned = [i.tokens is not None for i in good]
    rows = [i.tokens for i in good if i.tokens is not None]
    tokens = torch.stack(rows) if rows else None
    for item in items:  # the stacked copies are all that is needed from here on
        item.pixels = item.tokens = None
    return DecodedBatch(items, pixels.half() if half else pixels, tokens, captioned)


def _failed(position: int, reason: DecodeFailure, detail: str) -> DecodedItem:
    return DecodedItem(position, None, None, failure=reason, detail=detail)


def _as_json(text: str | None) -> str | None:
    """Sidecar metadata as compact JSON (no trailing newline from the file); a broken
    sidecar is kept, marked, not fatal."""
    if text is None:
        return None
    try:
        value = json.loads(text)
    except ValueError as err:
        return json.dumps({"invalid_sidecar_json": str(err), "text": text[:1000]})
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
