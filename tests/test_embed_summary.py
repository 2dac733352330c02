"""The embed job's rates: over the whole run, and once the model is loaded."""

from __future__ import annotations

from clipsearch.encoder import DecodeFailure
from clipsearch.indexer.embed.job import EmbedSummary


def summary(seconds: float, setup: float) -> EmbedSummary:
    return EmbedSummary(
        embedded=90,
        unchanged=5,
        skipped={DecodeFailure.TRUNCATED: 10},
        deleted=0,
        duplicates=0,
        seconds=seconds,
        shards=1,
        setup_seconds=setup,
    )


def test_rates_count_skipped_images_and_leave_setup_out() -> None:
    done = summary(seconds=10.0, setup=6.0)
    assert done.images_per_second == 10.0  # 100 processed, unchanged ones not
    assert done.embedding_rate == 25.0
    assert "25.0 after 6.0 s loading the model" in done.describe()


def test_a_run_that_did_no_work_has_no_rate() -> None:
    assert summary(seconds=2.0, setup=2.0).embedding_rate == 0.0
    assert summary(seconds=0.0, setup=0.0).images_per_second == 0.0
