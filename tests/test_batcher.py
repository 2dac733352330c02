"""The dynamic batcher: batches form under concurrency, abandoned work is dropped, bounds hold."""

from __future__ import annotations

import threading
import time

import pytest

from clipsearch.server.core.batcher import Batcher, CallerGoneError, QueueFullError
from clipsearch.server.core.config import BatchingConfig


class Recorder:
    """A batch function that records the batches it ran; `gate` holds it until released."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []
        self.gate = threading.Event()
        self.gate.set()
        self.entered = threading.Event()

    def __call__(self, items: list[int]) -> list[int]:
        self.entered.set()
        self.gate.wait()
        self.batches.append(list(items))
        return [item * 10 for item in items]


def test_items_queued_while_a_batch_runs_share_the_next_batch() -> None:
    run = Recorder()
    batcher = Batcher("t", run, BatchingConfig(max_batch=4, max_wait_ms=0))
    run.gate.clear()
    first = batcher.submit([0])
    run.entered.wait(5)
    waiting = batcher.submit([1, 2, 3, 4, 5, 6])  # arrive while batch [0] runs
    run.gate.set()
    results = [f.result(5) for f in first + waiting]
    batcher.close()
    assert [r.value for r in results] == [0, 10, 20, 30, 40, 50, 60]
    assert run.batches == [[0], [1, 2, 3, 4], [5, 6]]
    assert results[2].batch_size == 4


def test_abandoned_items_are_dropped_before_they_run() -> None:
    run = Recorder()
    batcher = Batcher("t", run, BatchingConfig(max_batch=8, max_wait_ms=0))
    run.gate.clear()
    blocker = batcher.submit([0])
    run.entered.wait(5)
    expired = batcher.submit([1], deadline=time.monotonic() - 1)
    cancelled = batcher.submit([2], is_active=lambda: False)
    kept = batcher.submit([3])
    run.gate.set()
    assert kept[0].result(5).value == 30
    for future in expired + cancelled:
        with pytest.raises(CallerGoneError):
            future.result(5)
    blocker[0].result(5)
    batcher.close()
    assert [1] not in run.batches and all(2 not in batch for batch in run.batches)


def test_a_full_queue_refuses_the_whole_submission() -> None:
    run = Recorder()
    batcher = Batcher("t", run, BatchingConfig(max_batch=1, max_wait_ms=0, max_queue=3))
    run.gate.clear()
    batcher.submit([0])
    run.entered.wait(5)
    accepted = batcher.submit([1, 2, 3])
    with pytest.raises(QueueFullError, match="queue is full"):
        batcher.submit([4])
    run.gate.set()
    assert [f.result(5).value for f in accepted] == [10, 20, 30]
    batcher.close()
    assert 4 not in {item for batch in run.batches for item in batch}


def test_a_failing_batch_fails_its_callers_and_the_batcher_carries_on() -> None:
    calls = []

    def flaky(items: list[int]) -> list[int]:
        calls.append(items)
        if len(calls) == 1:
            raise RuntimeError("model exploded")
        return items

    batcher = Batcher("t", flaky, BatchingConfig(max_batch=4, max_wait_ms=0))
    with pytest.raises(RuntimeError, match="model exploded"):
        batcher.submit([1])[0].result(5)
    assert batcher.submit([2])[0].result(5).value == 2
    batcher.close()
