"""Atomic writes: whole files or none, with ordinary permissions."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from clipsearch.atomic import remove_temporary_files, write_atomically, write_text_atomically


def test_written_files_are_readable_by_others_like_any_file(tmp_path: Path) -> None:
    target = tmp_path / "manifest.json"
    write_text_atomically(target, "{}")
    mask = os.umask(0o022)
    os.umask(mask)
    assert stat.S_IMODE(target.stat().st_mode) == 0o666 & ~mask


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "data.bin"
    target.write_text("old")

    def fail(tmp: Path) -> None:
        tmp.write_text("half")
        raise OSError("no space left on device")

    with pytest.raises(OSError, match="no space"):
        write_atomically(target, fail)
    assert target.read_text() == "old"
    assert remove_temporary_files(tmp_path) == []
