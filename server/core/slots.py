"""A bounded number of calls at work, and a bounded queue of calls waiting for a turn.

A call beyond the limit waits, first come first served, until a call ends or its own
deadline passes; only a full queue refuses at once. Waiting costs the caller latency,
not an error, so short bursts above the limit are absorbed.
"""

from __future__ import annotations

import collections
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from clipsearch.server.core.calls import RequestError, Status

# How often a waiting call checks that its caller is still there (cancelled calls leave).
_LIVENESS_POLL_S = 0.1


class CallSlots:
    def __init__(self, limit: int, max_waiting: int) -> None:
        if limit < 1 or max_waiting < 0:
            raise ValueError(f"need limit >= 1 and max_waiting >= 0, got {limit}, {max_waiting}")
        self.limit = limit
        self.max_waiting = max_waiting
        self._lock = threading.Lock()
        self._running = 0
        # Each waiting call's turn; a finishing call hands its slot to the oldest.
        self._waiting: collections.deque[threading.Event] = collections.deque()

    @property
    def running(self) -> int:
        return self._running

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    @contextmanager
    def hold(
        self, deadline: float | None = None, is_active: Callable[[], bool] | None = None
    ) -> Iterator[None]:
        """A slot for the duration of the block; raises RequestError when none comes."""
        self._acquire(deadline, is_active)
        try:
            yield
        finally:
            self._release()

    def _acquire(self, deadline: float | None, is_active: Callable[[], bool] | None) -> None:
        with self._lock:
            if self._running < self.limit and not self._waiting:
                self._running += 1
                return
            if len(self._waiting) >= self.max_waiting:
                raise RequestError(
                    Status.RESOURCE_EXHAUSTED,
                    f"the server is busy: {self.limit} calls at work and {self.max_waiting} "
                    "waiting, its limits (--max-concurrent, --max-waiting); retry with "
                    "backoff, or spread the load over more replicas",
                )
            turn = threading.Event()
            self._waiting.append(turn)
        while not turn.wait(_wait_step(deadline, is_active)):
            gone = is_active is not None and not is_active()
            if gone or (deadline is not None and time.monotonic() >= deadline):
                with self._lock:
                    if turn.is_set():  # handed a slot just now: take it after all
                        return
                    self._waiting.remove(turn)
                if gone:
                    raise RequestError(Status.CANCELLED, "the call was cancelled while queued")
                raise RequestError(
                    Status.DEADLINE_EXCEEDED,
                    f"the deadline passed while the call waited for one of the server's "
                    f"{self.limit} call slots, all busy: give the call a longer deadline, "
                    "retry with backoff, or spread the load over more replicas",
                )

    def _release(self) -> None:
        with self._lock:
            if self._waiting:
                self._waiting.popleft().set()  # the slot passes on; the count stays
            else:
                self._running -= 1


def _wait_step(deadline: float | None, is_active: Callable[[], bool] | None) -> float | None:
    """How long to block before looking at the deadline and the caller again."""
    remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
    if is_active is None:
        return remaining
    return _LIVENESS_POLL_S if remaining is None else min(remaining, _LIVENESS_POLL_S)
