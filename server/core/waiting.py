"""Handing work to a batcher and waiting for it within the caller's deadline; a caller
who has gone (deadline passed, call cancelled) gets the matching status."""

from __future__ import annotations

import time
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from typing import TypeVar

from clipsearch.server.core.batcher import Batched, Batcher, CallerGoneError, QueueFullError
from clipsearch.server.core.calls import CallContext, RequestError, Status

T = TypeVar("T")
U = TypeVar("U")


def submit(batcher: Batcher[T, U], items: list[T], call: CallContext) -> list[Future[Batched[U]]]:
    try:
        return batcher.submit(items, call.deadline, call.is_active)
    except QueueFullError as err:
        raise RequestError(Status.RESOURCE_EXHAUSTED, str(err)) from err


def wait(futures: list[Future[T]], call: CallContext) -> list[T]:
    results = []
    try:
        for future in futures:
            timeout = None if call.deadline is None else max(0.0, call.deadline - time.monotonic())
            results.append(future.result(timeout))
    except (FutureTimeout, CallerGoneError) as err:
        for future in futures:
            future.cancel()
        if call.is_active is not None and not call.is_active():
            raise RequestError(Status.CANCELLED, "the call was cancelled") from err
        raise RequestError(
            Status.DEADLINE_EXCEEDED, "the deadline passed before the query was answered"
        ) from err
    return results
