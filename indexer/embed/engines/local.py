"""The local engine: decoding in worker processes, overlapped with encoding in this one."""

from __future__ import annotations

import signal
from collections.abc import Iterator, Sequence
from functools import partial
from typing import TypeVar

import torch
from torch.utils.data import DataLoader, Dataset

from clipsearch.encoder import ClipEncoder
from clipsearch.errors import ClipsearchError
from clipsearch.indexer.embed.decode import DecodedItem, Decoder, collate
from clipsearch.indexer.embed.encode import EncodedBatch, PendingBatch, start_batch
from clipsearch.indexer.embed.plan import PlannedItem
from clipsearch.indexer.embed.sources import Reader
from clipsearch.indexer.memory import release_free_memory

PREFETCH_BATCHES_PER_WORKER = 2  # bounds memory: workers x 2 batches in flight
TRIM_EVERY_ITEMS = 512
T = TypeVar("T")
DEFAULT_WORKER_TIMEOUT_S = 600.0


class WorkerStalledError(ClipsearchError):
    """A decode worker sent no batch in time: it died, or could not hand its batch over."""


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
    worker_timeout_s: float = DEFAULT_WORKER_TIMEOUT_S,
) -> Iterator[EncodedBatch]:
    """Encoded batches in item order. Memory holds at most a few batches per worker.
    A worker that sends nothing for `worker_timeout_s` fails the job instead of hanging it
    (workers hand batches over in /dev/shm: when that is full, nothing ever arrives)."""
    cuda = encoder.device.type == "cuda"
    loader = DataLoader(
        _PendingItems(items, decoder),
        batch_size=batch_size,
        num_workers=workers,
        collate_fn=partial(collate, half=cuda),
        pin_memory=cuda,
        prefetch_factor=PREFETCH_BATCHES_PER_WORKER if workers else None,
        multiprocessing_context="fork" if workers else None,
        timeout=worker_timeout_s if workers else 0,
        worker_init_fn=_ignore_ctrl_c,
    )
    done = 0
    pending: PendingBatch | None = None
    with torch.inference_mode():
        for batch in _guarded(iter(loader), worker_timeout_s):
            # The next batch is queued before the last one's vectors are awaited: the GPU
            # stays busy while this process commits shards and takes the next batch.
            started = start_batch(encoder, batch)
            if pending is not None:
                yield pending.result()
            pending = started
            done += len(batch.items)
            if done % TRIM_EVERY_ITEMS < len(batch.items):
                release_free_memory()
        if pending is not None:
            yield pending.result()


def _ignore_ctrl_c(worker: int) -> None:
    """Ctrl-C reaches the workers too; the main process decides when they stop, after
    committing what is encoded."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _guarded(batches: Iterator[T], timeout_s: float) -> Iterator[T]:
    while True:
        try:
            yield next(batches)
        except StopIteration:
            return
        except RuntimeError as err:
            if "timed out" not in str(err):
                raise
            raise WorkerStalledError(
                f"no decoded batch arrived for {timeout_s:g} s: a decode worker died or could "
                "not hand its batch over (is /dev/shm full?). Committed shards are kept; "
                "rerun to resume, with --workers 0 to decode in this process"
            ) from err
