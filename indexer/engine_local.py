"""The local engine: decoding in worker processes, overlapped with encoding in this one."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from functools import partial

import torch
from torch.utils.data import DataLoader, Dataset

from clipsearch.encoder import ClipEncoder
from indexer.decode import DecodedItem, Decoder, collate
from indexer.encoded import EncodedBatch, encode_batch
from indexer.memory import release_free_memory
from indexer.plan import PlannedItem
from indexer.sources import Reader

PREFETCH_BATCHES_PER_WORKER = 2  # bounds memory: workers x 2 batches in flight
TRIM_EVERY_ITEMS = 512


class _PendingItems(Dataset[DecodedItem]):
    def __init__(self, items: Sequence[PlannedItem], decoder: Decoder) -> None:
        self.items = items
        self.decoder = decoder
        self._reader: Reader | None = None  # one per worker process, made on first use

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, position: int) -> DecodedItem:
        if self._reader is None:
            self._reader = Reader()
        if position % TRIM_EVERY_ITEMS == 0:
            release_free_memory()
        return self.decoder(position, self.items[position], self._reader)


def run_local(
    items: Sequence[PlannedItem],
    decoder: Decoder,
    encoder: ClipEncoder,
    batch_size: int,
    workers: int,
) -> Iterator[EncodedBatch]:
    """Encoded batches in item order. Memory holds at most a few batches per worker."""
    cuda = encoder.device.type == "cuda"
    loader = DataLoader(
        _PendingItems(items, decoder),
        batch_size=batch_size,
        num_workers=workers,
        collate_fn=partial(collate, half=cuda),
        pin_memory=cuda,
        prefetch_factor=PREFETCH_BATCHES_PER_WORKER if workers else None,
        multiprocessing_context="fork" if workers else None,
    )
    done = 0
    with torch.inference_mode():
        for batch in loader:
            yield encode_batch(encoder, batch)
            done += len(batch.items)
            if done % TRIM_EVERY_ITEMS < len(batch.items):
                release_free_memory()
