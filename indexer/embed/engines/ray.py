"""The Ray engine: decoding in CPU tasks, encoding in an actor pool (a GPU per actor if any).

The driver receives encoded batches in order and commits shards exactly as the local
engine does, so the files, the manifest and resumability are the same.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import ray
import torch

from clipsearch.encoder import ClipEncoder, DecodeFailure, EncoderInfo, load_encoder
from clipsearch.indexer.embed.decode import DecodedItem, Decoder
from clipsearch.indexer.embed.encode import EncodedBatch
from clipsearch.indexer.embed.plan import PlannedItem
from clipsearch.indexer.embed.sources import Reader
from clipsearch.indexer.ray_cluster import connect
from clipsearch.models import ModelSpec

log = logging.getLogger(__name__)

Columns = dict[str, np.ndarray]
_TEXT_FIELDS = ("content_hash", "caption", "metadata", "failure", "detail")


@dataclass(frozen=True)
class _DecodeTask:
    """Ray Data callable: positions to decoded columns (zero pixels where decoding failed)."""

    decoder: Decoder
    items: Sequence[PlannedItem]
    pixel_shape: tuple[int, ...]
    context_length: int

    def __call__(self, batch: Columns) -> Columns:
        reader = Reader()
        decoded = [self.decoder(int(p), self.items[int(p)], reader) for p in batch["position"]]
        reader.close()
        n = len(decoded)
        pixels = np.zeros((n, *self.pixel_shape), dtype=np.float32)
        tokens = np.zeros((n, self.context_length), dtype=np.int64)
        for row, item in enumerate(decoded):
            if item.pixels is not None:
                pixels[row] = item.pixels.numpy()
            if item.tokens is not None:
                tokens[row] = item.tokens.numpy()
        columns: Columns = {
            "position": np.array([i.position for i in decoded], dtype=np.int64),
            "pixels": pixels,
            "tokens": tokens,
            "decoded": np.array([i.failure is None for i in decoded]),
            "captioned": np.array([i.tokens is not None for i in decoded]),
            "width": np.array([i.width for i in decoded], dtype=np.int32),
            "height": np.array([i.height for i in decoded], dtype=np.int32),
        }
        for name in _TEXT_FIELDS:
            # "" stands for None: all-None columns would get a different Arrow type per block.
            columns[name] = np.array([_text(getattr(i, name)) for i in decoded], dtype=object)
        return columns


class _EncodeActor:
    """Holds one model for its lifetime; on a GPU when Ray assigned it one."""

    def __init__(self, spec: ModelSpec) -> None:
        self.encoder: ClipEncoder = load_encoder(spec)

    def __call__(self, batch: Columns) -> Columns:
        decoded, captioned = batch["decoded"], batch["captioned"] & batch["decoded"]
        dim = self.encoder.dim
        vectors = np.zeros((len(decoded), dim), dtype=np.float32)
        text = np.zeros((len(decoded), dim), dtype=np.float32)
        if decoded.any():
            vectors[decoded] = self.encoder.encode_pixels(
                torch.from_numpy(batch["pixels"][decoded])
            )
        if captioned.any():
            text[captioned] = self.encoder.encode_tokens(
                torch.from_numpy(batch["tokens"][captioned])
            )
        out = {k: v for k, v in batch.items() if k not in ("pixels", "tokens")}
        return {**out, "vectors": vectors, "text_vectors": text, "captioned": captioned}


def run_ray(
    items: Sequence[PlannedItem],
    decoder: Decoder,
    spec: ModelSpec,
    info: EncoderInfo,
    batch_size: int,
    address: str | None,
    actors: int | None = None,
) -> Iterator[EncodedBatch]:
    """Encoded batches in item order; `info` describes the model the actors will load."""
    if not items:
        return
    connect(address)
    context = ray.data.DataContext.get_current()
    context.execution_options.preserve_order = True  # shards are cut in pending order
    context.enable_progress_bars = False
    gpus = int(ray.cluster_resources().get("GPU", 0))  # type: ignore[no-untyped-call]
    pool = actors or max(1, gpus)
    height, width = info.preprocess.size
    task = _DecodeTask(decoder, items, (3, height, width), info.context_length)
    dataset = (
        ray.data.range(len(items))
        .rename_columns({"id": "position"})
        # Decoding takes whole CPUs in stateless tasks; the encoders a GPU each (or a part of
        # a CPU beside torch's own threads). Different resources keep Ray from fusing the two
        # stages, which would decode inside the encoder actors.
        .map_batches(task, batch_size=batch_size, batch_format="numpy", num_cpus=1)
        .map_batches(
            _EncodeActor,
            fn_constructor_args=(spec,),
            batch_size=batch_size,
            batch_format="numpy",
            compute=ray.data.ActorPoolStrategy(size=pool),
            num_gpus=1 if gpus else 0,
            num_cpus=0 if gpus else 0.5,
        )
    )
    for batch in dataset.iter_batches(batch_size=batch_size, batch_format="numpy"):
        yield _to_encoded(batch)


def _to_encoded(batch: Columns) -> EncodedBatch:
    items = []
    for row, position in enumerate(batch["position"]):
        failure = batch["failure"][row]
        items.append(
            DecodedItem(
                position=int(position),
                pixels=None,
                tokens=None,
                width=int(batch["width"][row]),
                height=int(batch["height"][row]),
                content_hash=str(batch["content_hash"][row]),
                caption=_none_if_empty(batch["caption"][row]),
                metadata=_none_if_empty(batch["metadata"][row]),
                failure=DecodeFailure(failure) if failure else None,
                detail=str(batch["detail"][row]),
            )
        )
    decoded = batch["decoded"].astype(bool)
    captioned = batch["captioned"].astype(bool)
    return EncodedBatch(
        items=items,
        vectors=batch["vectors"][decoded],
        text_vectors=batch["text_vectors"][captioned] if captioned.any() else None,
        captioned=[bool(c) for c in captioned[decoded]],
    )


def _text(value: object) -> str:
    return "" if value is None else str(value)


def _none_if_empty(value: str) -> str | None:
    """Inverse of _text; lossless because empty captions and metadata are None already."""
    return value or None
