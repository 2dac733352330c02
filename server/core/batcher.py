"""Dynamic batching: items from concurrent requests run through one function in batches.

One worker thread per batcher. It takes what is queued (up to `max_batch`); when recent
batches show concurrency it waits up to `max_wait` for the batch to fill, and when they
do not (a single client) it runs at once, so a lone request never pays the wait.
Items whose caller gave up (deadline passed, RPC cancelled) are dropped before running.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Generic, TypeVar

from clipsearch.server.core.config import BatchingConfig

log = logging.getLogger(__name__)

ItemT = TypeVar("ItemT")
OutT = TypeVar("OutT")


class QueueFullError(Exception):
    """The stage has `max_queue` items waiting; the caller should back off and retry."""


class CallerGoneError(Exception):
    """The caller's deadline passed or its RPC was cancelled before its item ran."""


@dataclass(frozen=True)
class Batched(Generic[OutT]):
    """One item's output and what it cost: waiting in the queue, and its batch's run."""

    value: OutT
    queue_s: float
    run_s: float
    batch_size: int


@dataclass
class _Pending(Generic[ItemT, OutT]):
    item: ItemT
    future: Future[Batched[OutT]]
    enqueued: float
    deadline: float | None
    is_active: Callable[[], bool] | None  # None: the caller cannot go away

    def abandoned(self, now: float) -> bool:
        if self.deadline is not None and now > self.deadline:
            return True
        return self.is_active is not None and not self.is_active()


BatchObserver = Callable[[int, float], None]  # (batch size, run seconds)


class Batcher(Generic[ItemT, OutT]):
    """Runs `run(items) -> outputs` (same length, same order) on batches of submitted items."""

    def __init__(
        self,
        name: str,
        run: Callable[[list[ItemT]], Sequence[OutT]],
        config: BatchingConfig,
        observe: BatchObserver | None = None,
    ) -> None:
        self.name = name
        self._run = run
        self._config = config
        self._observe = observe
        self._queue: queue.Queue[_Pending[ItemT, OutT] | None] = queue.Queue()
        self._last_batch = 1
        self._thread = threading.Thread(target=self._loop, name=f"batcher-{name}", daemon=True)
        self._thread.start()

    def depth(self) -> int:
        return self._queue.qsize()

    def submit(
        self,
        items: Sequence[ItemT],
        deadline: float | None = None,
        is_active: Callable[[], bool] | None = None,
    ) -> list[Future[Batched[OutT]]]:
        """Queue `items`; raises QueueFullError (queuing none of them) when there is no room."""
        if self.depth() + len(items) > self._config.max_queue:
            raise QueueFullError(
                f"the {self.name} queue is full ({self.depth()} waiting, limit "
                f"{self._config.max_queue}); retry with backoff"
            )
        now = time.monotonic()
        pending: list[_Pending[ItemT, OutT]] = [
            _Pending(item, Future(), now, deadline, is_active) for item in items
        ]
        for entry in pending:
            self._queue.put(entry)
        return [entry.future for entry in pending]

    def close(self, timeout: float = 5.0) -> None:
        """Finish what is queued, then stop the worker."""
        self._queue.put(None)
        self._thread.join(timeout)

    def _loop(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            batch, stop = self._gather(first)
            self._execute(batch)
            if stop:
                return

    def _gather(self, first: _Pending[ItemT, OutT]) -> tuple[list[_Pending[ItemT, OutT]], bool]:
        batch = [first]
        wait_until = first.enqueued + self._config.max_wait_ms / 1000
        patient = self._last_batch > 1
        while len(batch) < self._config.max_batch:
            timeout = wait_until - time.monotonic() if patient else 0.0
            try:
                entry = (
                    self._queue.get(timeout=timeout) if timeout > 0 else self._queue.get_nowait()
                )
            except queue.Empty:
                break
            if entry is None:
                return batch, True
            batch.append(entry)
        return batch, False

    def _execute(self, batch: list[_Pending[ItemT, OutT]]) -> None:
        now = time.monotonic()
        live = []
        for entry in batch:
            if not entry.future.set_running_or_notify_cancel():
                continue
            if entry.abandoned(now):
                entry.future.set_exception(CallerGoneError("the caller gave up before its turn"))
                continue
            live.append(entry)
        self._last_batch = len(batch)
        if not live:
            return
        started = time.monotonic()
        try:
            outputs = self._run([entry.item for entry in live])
            if len(outputs) != len(live):
                raise RuntimeError(f"{self.name}: {len(outputs)} outputs for {len(live)} items")
        except Exception as err:  # every waiting caller must hear of it, not hang
            log.exception("%s batch of %d failed", self.name, len(live))
            for entry in live:
                entry.future.set_exception(err)
            return
        run_s = time.monotonic() - started
        if self._observe is not None:
            self._observe(len(live), run_s)
        for entry, output in zip(live, outputs, strict=True):
            queue_s = started - entry.enqueued
            entry.future.set_result(Batched(output, queue_s, run_s, len(live)))
