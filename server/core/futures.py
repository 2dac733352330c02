"""Chaining futures, so a query moves from the encoder's batch to the index's batch
without waking its request thread in between."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future, InvalidStateError
from typing import TypeVar

A = TypeVar("A")
B = TypeVar("B")


def completed(value: A) -> Future[A]:
    future: Future[A] = Future()
    future.set_result(value)
    return future


def flat_map(first: Future[A], then: Callable[[A], Future[B]]) -> Future[B]:
    """A future of `then(first's result)`; an exception anywhere along the way ends it."""
    outer: Future[B] = Future()

    def settle(inner: Future[B]) -> None:
        error = None if inner.cancelled() else inner.exception()
        try:
            if inner.cancelled():
                outer.cancel()
            elif error is not None:
                outer.set_exception(error)
            else:
                outer.set_result(inner.result())
        except InvalidStateError:  # the waiter gave up and cancelled `outer`: nobody listens
            pass

    def continue_with(done: Future[A]) -> None:
        if done.cancelled() or done.exception() is not None:
            settle(done)  # type: ignore[arg-type]  # carries only the cancellation or error
            return
        try:
            follow = then(done.result())
        except Exception as err:  # e.g. the next stage's queue is full: the caller hears it
            follow = Future()
            follow.set_exception(err)
        follow.add_done_callback(settle)

    first.add_done_callback(continue_with)
    return outer
