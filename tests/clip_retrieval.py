"""clip-retrieval's real client and front end, for testing clipsearch's clip-back API.

The package is installed without its dependency set (torch, faiss, flask, ...) into a
folder of the pytest cache, once per version. Its `__init__` imports all of them, so the
client is loaded from its own file: it needs nothing but `requests`.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

VERSION = "2.45.0"


@dataclass(frozen=True)
class ClipRetrieval:
    root: Path  # the install folder
    client: type  # clip_retrieval.clip_client.ClipClient
    modality: type  # clip_retrieval.clip_client.Modality

    @property
    def front(self) -> Path:
        """clip-front's built static files, which the wheel ships."""
        return self.root / "front" / "build"


def install(cache: Path) -> ClipRetrieval:
    """clip-retrieval in `cache`/clip-retrieval-VERSION, installed there on first use. Skips
    the test where pip cannot fetch it (no network), except on CI, where that fails."""
    root = cache / f"clip-retrieval-{VERSION}"
    if not root.exists():
        staging = cache / f"clip-retrieval-{VERSION}.{os.getpid()}.partial"
        shutil.rmtree(staging, ignore_errors=True)
        pip = [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
               "--no-deps", "--target", str(staging), f"clip-retrieval=={VERSION}"]  # fmt: skip
        done = subprocess.run(pip, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            shutil.rmtree(staging, ignore_errors=True)
            message = f"pip could not install clip-retrieval {VERSION}: {done.stderr.strip()}"
            if os.environ.get("CI"):
                raise RuntimeError(message)
            pytest.skip(message)
        try:
            staging.rename(root)  # whole or absent, whatever runs at the same time
        except OSError:  # another run installed it first
            shutil.rmtree(staging, ignore_errors=True)
    path = root / "clip_retrieval" / "clip_client.py"
    spec = importlib.util.spec_from_file_location("clip_retrieval_client", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return ClipRetrieval(root, module.ClipClient, module.Modality)
