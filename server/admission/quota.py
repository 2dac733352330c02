"""Per-key limits: requests per second (a token bucket) and requests in flight."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass


class QuotaExceededError(Exception):
    """The key is over its rate or concurrency limit; the message says which."""


@dataclass(frozen=True)
class Limit:
    rate_per_s: float | None = None  # None: unlimited
    max_concurrent: int | None = None


class _Bucket:
    """Holds up to `burst` tokens, refilled at `rate` per second; a request takes one."""

    def __init__(self, rate: float, clock: Callable[[], float]) -> None:
        self.rate = rate
        self.burst = max(1.0, rate)
        self.tokens = self.burst
        self.clock = clock
        self.stamp = clock()

    def take(self) -> bool:
        now = self.clock()
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False


class Quotas:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._buckets: dict[str, _Bucket] = {}
        self._in_flight: dict[str, int] = {}

    @contextmanager
    def hold(self, name: str, limit: Limit) -> Iterator[None]:
        """Admit one request of key `name` for the duration of the block, or raise."""
        with self._lock:
            if limit.rate_per_s is not None:
                bucket = self._buckets.get(name)
                if bucket is None or bucket.rate != limit.rate_per_s:
                    bucket = self._buckets[name] = _Bucket(limit.rate_per_s, self._clock)
                if not bucket.take():
                    raise QuotaExceededError(
                        f"key {name!r} is over its rate limit of {limit.rate_per_s:g} "
                        "requests/s; slow down and retry"
                    )
            running = self._in_flight.get(name, 0)
            if limit.max_concurrent is not None and running >= limit.max_concurrent:
                raise QuotaExceededError(
                    f"key {name!r} already has {running} requests in flight, its limit; "
                    "wait for one to finish"
                )
            self._in_flight[name] = running + 1
        try:
            yield
        finally:
            with self._lock:
                self._in_flight[name] -= 1
