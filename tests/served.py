"""A real collection embedded with the tiny model and indexed, and servers over it."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from clipsearch.indexer import BuildConfig, EmbedConfig, SourceSpec, run_build, run_embed
from clipsearch.models import ModelSpec
from tests.conftest import TINY, make_collection


@dataclass(frozen=True)
class ServedCollection:
    images: Path
    shards: Path
    index: Path
    model: ModelSpec

    def copy_index(self, to: Path) -> Path:
        """An index folder of one's own (for tests that publish or damage versions)."""
        shutil.copytree(self.index, to, symlinks=True)
        return to


def make_served_collection(
    root: Path, textiles: list[Path], photos: dict[str, Image.Image], checkpoint: Path
) -> ServedCollection:
    images = make_collection(root / "images", textiles)
    for name, photo in photos.items():
        photo.convert("RGB").save(images / f"{name}.jpg", quality=90)
        (images / f"{name}.txt").write_text(f"a photo: {name}")
    model = ModelSpec(TINY, str(checkpoint), device="cpu")
    run_embed(EmbedConfig(SourceSpec(str(images)), root / "shards", model, quiet=True))
    run_build(BuildConfig(root / "shards", root / "index", eval_queries=20))
    return ServedCollection(images, root / "shards", root / "index", model)
