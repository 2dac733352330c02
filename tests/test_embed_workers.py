"""How many decode workers `clipsearch embed` starts by default."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from clipsearch.cli.main import main
from clipsearch.indexer.embed.job import EmbedConfig, decode_workers, usable_cores
from clipsearch.indexer.embed.sources import SourceSpec


@pytest.mark.parametrize(
    ("cores", "workers"),
    [(1, 1), (2, 1), (4, 3), (16, 15), (64, 63)],
)
def test_workers_are_all_cores_but_the_encoders(cores: int, workers: int) -> None:
    assert decode_workers(cores) == workers


def test_cores_are_this_process_affinity(monkeypatch: pytest.MonkeyPatch) -> None:
    """A container limited to a CPU set sees the machine's count in os.cpu_count()."""
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 3, 5}, raising=False)
    monkeypatch.setattr(os, "cpu_count", lambda: 96)
    assert usable_cores() == 3
    assert EmbedConfig(SourceSpec(""), Path()).workers == 2


def test_help_shows_the_default(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["embed", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert f"less one for the encoder: {decode_workers(usable_cores())} here" in help_text
