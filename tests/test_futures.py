"""Chained futures: values, errors and cancellation pass along the chain."""

from __future__ import annotations

from concurrent.futures import CancelledError, Future

import pytest

from clipsearch.server.core.futures import completed, flat_map


def test_values_flow_through_the_chain_when_the_first_completes_later() -> None:
    first: Future[int] = Future()
    chained = flat_map(first, lambda x: completed(x * 2))
    assert not chained.done()
    first.set_result(21)
    assert chained.result(1) == 42


def test_errors_of_either_stage_reach_the_end() -> None:
    failed: Future[int] = Future()
    failed.set_exception(ValueError("encode failed"))
    with pytest.raises(ValueError, match="encode failed"):
        flat_map(failed, completed).result(1)

    def refuse(_: int) -> Future[int]:
        raise RuntimeError("queue full")

    with pytest.raises(RuntimeError, match="queue full"):
        flat_map(completed(1), refuse).result(1)


def test_cancellation_passes_along_and_a_cancelled_end_is_left_alone() -> None:
    first: Future[int] = Future()
    chained = flat_map(first, completed)
    first.cancel()
    with pytest.raises(CancelledError):
        chained.result(1)
    later: Future[int] = Future()
    abandoned = flat_map(later, completed)
    abandoned.cancel()
    later.set_result(1)  # settling an abandoned chain must not raise
    assert abandoned.cancelled()
