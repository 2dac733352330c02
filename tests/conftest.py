"""Shared fixtures: a tiny seeded CLIP checkpoint, real photos, and an offline HF cache."""

from __future__ import annotations

import hashlib
import io
import json
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import huggingface_hub.constants
import numpy as np
import open_clip
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file
from skimage import data as skdata

from clipsearch.client import SearchClient
from clipsearch.encoder import ClipEncoder, load_encoder, register_model_configs
from clipsearch.models import ModelSpec

if TYPE_CHECKING:
    from clipsearch.server.app import RunningServer
    from tests.served import ServedCollection

TINY = "clipsearch-tiny"
PHOTO_NAMES = ("astronaut", "coffee", "chelsea", "rocket", "hubble_deep_field")
TEXTS = (
    "an astronaut in a white space suit",
    "a cup of coffee on a saucer",
    "a cat lying down",
    "a rocket on the launch pad",
    "stars and galaxies",
    "",
    "ünïcödé, emoji 🚀 and a very long caption " + "word " * 100,
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def photos() -> dict[str, Image.Image]:
    """Real photographs shipped with scikit-image, as RGB PIL images."""
    return {name: Image.fromarray(getattr(skdata, name)()).convert("RGB") for name in PHOTO_NAMES}


def save_random_model(
    model_name: str, path: Path, dtype: torch.dtype = torch.float32
) -> torch.nn.Module:
    """Write a seeded random-init model's weights as safetensors in `dtype`.

    Returns the fp32 model holding exactly the weights written (rounded to `dtype`).
    """
    register_model_configs()
    torch.manual_seed(0)
    model = open_clip.create_model(model_name, pretrained=None).to(dtype)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    return model.float().eval()


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("tiny") / "tiny.safetensors"
    save_random_model(TINY, path)
    return path


@pytest.fixture(scope="session")
def tiny_encoder(tiny_checkpoint: Path) -> ClipEncoder:
    return load_encoder(ModelSpec(model=TINY, pretrained=str(tiny_checkpoint), device="cpu"))


@dataclass
class HubCache:
    """A Hugging Face hub cache in a temporary folder, laid out as the hub client writes it."""

    root: Path

    def add_file(self, repo_id: str, filename: str, content: bytes, commit: str = "a" * 40) -> Path:
        repo = self.root / ("models--" + repo_id.replace("/", "--"))
        blob = repo / "blobs" / hashlib.sha256(content).hexdigest()
        blob.parent.mkdir(parents=True, exist_ok=True)
        blob.write_bytes(content)
        link = repo / "snapshots" / commit / filename
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(Path("../..") / "blobs" / blob.name)
        (repo / "refs").mkdir(exist_ok=True)
        (repo / "refs" / "main").write_text(commit)
        return link

    def add_model(
        self, repo_id: str, weights: Path, config: dict[str, object] | None = None
    ) -> None:
        self.add_file(repo_id, "open_clip_model.safetensors", weights.read_bytes())
        if config is not None:
            self.add_file(repo_id, "open_clip_config.json", json.dumps(config).encode())


@pytest.fixture
def hub_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[HubCache]:
    """An empty, offline Hugging Face cache; tests add the repos they need."""
    root = tmp_path / "hf-hub"
    root.mkdir()
    monkeypatch.setenv("HF_HUB_CACHE", str(root))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    yield HubCache(root)


def reference_embeddings(
    model: torch.nn.Module,
    preprocess: object,
    images: list[Image.Image],
    texts: list[str],
    tokenizer_name: str,
) -> tuple[np.ndarray, np.ndarray]:
    """OpenCLIP's own inference path, one input at a time, normalised."""
    tokenizer = open_clip.get_tokenizer(tokenizer_name)
    with torch.no_grad():
        image_rows = [
            model.encode_image(preprocess(img).unsqueeze(0))  # type: ignore[operator]
            for img in images
        ]
        text_rows = [model.encode_text(tokenizer([t])) for t in texts]
    unit = torch.nn.functional.normalize
    return (
        unit(torch.cat(image_rows), dim=-1).numpy(),
        unit(torch.cat(text_rows), dim=-1).numpy(),
    )


@pytest.fixture(scope="session")
def textile_paths() -> list[Path]:
    """The 2,000 simulated textile JPEGs of conformal-clip-data, in a fixed order."""
    import conformal_clip_data

    root = conformal_clip_data.textile_simulated_root()
    return sorted(root.rglob("*.jpg"))


def bad_inputs() -> dict[str, bytes]:
    """One file for each way an input can be unusable."""
    buffer = io.BytesIO()
    Image.new("RGB", (64, 64), (200, 10, 10)).save(buffer, "JPEG")
    jpeg = buffer.getvalue()
    bomb = io.BytesIO()
    Image.new("1", (10_000, 10_000)).save(bomb, "PNG")
    return {
        "zero.jpg": b"",
        "text.jpg": b"just some text, not an image\n",
        "truncated.jpg": jpeg[: len(jpeg) // 3],
        "bomb.png": bomb.getvalue(),
    }


def collection_path(folder: Path, index: int, image: Path) -> Path:
    """Where make_collection puts the index-th image (class folders reuse file names)."""
    return folder / f"group{index % 3}" / f"{image.parent.name}-{image.name}"


def make_collection(folder: Path, images: list[Path], with_bad: bool = False) -> Path:
    """A directory of copied images (in nested folders), optionally with bad inputs."""
    for index, image in enumerate(images):
        target = collection_path(folder, index, image)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(image, target)
    if with_bad:
        for name, content in bad_inputs().items():
            (folder / name).write_bytes(content)
    return folder


@pytest.fixture(scope="session")
def local_ray() -> Iterator[None]:
    """A real Ray instance on this machine, shared by the tests that need one."""
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


@pytest.fixture(scope="session")
def served_collection(
    tmp_path_factory: pytest.TempPathFactory,
    textile_paths: list[Path],
    photos: dict[str, Image.Image],
    tiny_checkpoint: Path,
) -> ServedCollection:
    from tests.served import make_served_collection

    root = tmp_path_factory.mktemp("served")
    return make_served_collection(root, textile_paths[::100], photos, tiny_checkpoint)


@pytest.fixture
def start_server(
    tiny_encoder: ClipEncoder,
) -> Iterator[Callable[..., RunningServer]]:
    """Starts real servers on free loopback ports (with the tiny model); stops them after."""
    from clipsearch.server.app import start
    from clipsearch.server.config import NamedIndex, ServerConfig

    running: list[RunningServer] = []

    def starter(index_dir: Path, **settings: object) -> RunningServer:
        settings.setdefault("reload_interval_s", 0.2)
        indexes = NamedIndex.of(index_dir)
        config = ServerConfig(indexes, port=0, metrics_port=0, **settings)  # type: ignore[arg-type]
        server = start(config, encoder=tiny_encoder)
        running.append(server)
        return server

    yield starter
    for server in running:
        server.stop(0)


@pytest.fixture
def server(
    served_collection: ServedCollection, start_server: Callable[..., RunningServer]
) -> RunningServer:
    return start_server(served_collection.index)


@pytest.fixture
def client(server: RunningServer) -> Iterator[SearchClient]:
    with SearchClient(f"127.0.0.1:{server.port}", timeout_s=30) as client:
        yield client
