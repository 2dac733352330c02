"""Where weights and preprocessing come from, and how a missing model fails."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import open_clip
import pytest

from clipsearch.encoder import (
    SEED_MODELS,
    ModelSpec,
    UnknownModelError,
    WeightsUnavailableError,
    resolve_weights,
)
from clipsearch.models import SeedModel
from tests.conftest import HubCache

SEED_IDS = [f"{s.model}-{s.pretrained}" for s in SEED_MODELS]


def seed_repo(seed: SeedModel) -> str:
    return str(open_clip.get_pretrained_cfg(seed.model, seed.pretrained)["hf_hub"]).rstrip("/")


@pytest.mark.parametrize("seed", SEED_MODELS, ids=SEED_IDS)
def test_seed_tag_resolves_from_cache_with_its_own_preprocessing(
    seed: SeedModel, hub_cache: HubCache
) -> None:
    hub_cache.add_file(seed_repo(seed), "open_clip_model.safetensors", b"weights")
    resolved = resolve_weights(ModelSpec(seed.model, seed.pretrained))
    cfg = open_clip.get_pretrained_cfg(seed.model, seed.pretrained)
    assert resolved.checkpoint is not None and resolved.checkpoint.read_bytes() == b"weights"
    assert resolved.preprocess.mean == tuple(cfg["mean"])
    assert resolved.preprocess.std == tuple(cfg["std"])
    assert resolved.preprocess.interpolation == cfg["interpolation"]
    assert resolved.preprocess.resize_mode == cfg["resize_mode"]


def test_default_model_does_not_use_openai_normalisation(hub_cache: HubCache) -> None:
    hub_cache.add_file(seed_repo(SEED_MODELS[0]), "open_clip_pytorch_model.bin", b"w")
    resolved = resolve_weights(ModelSpec())
    assert resolved.preprocess.mean == (0.5, 0.5, 0.5)
    assert resolved.preprocess.mean != open_clip.OPENAI_DATASET_MEAN
    assert resolved.checkpoint is not None and resolved.checkpoint.name.endswith(".bin")


def test_local_checkpoint_keeps_the_preprocessing_of_its_tag(tmp_path: Path) -> None:
    checkpoint = tmp_path / "vitl.safetensors"
    checkpoint.write_bytes(b"w")
    spec = ModelSpec("ViT-L-14", str(checkpoint), preprocess_tag="laion2b_s32b_b82k")
    resolved = resolve_weights(spec)
    assert resolved.checkpoint == checkpoint
    assert resolved.preprocess.mean == (0.5, 0.5, 0.5)


def test_local_checkpoint_reads_a_config_beside_it(tmp_path: Path) -> None:
    checkpoint = tmp_path / "open_clip_model.safetensors"
    checkpoint.write_bytes(b"w")
    (tmp_path / "open_clip_config.json").write_text(
        json.dumps({"preprocess_cfg": {"mean": [0.1, 0.2, 0.3], "interpolation": "bilinear"}})
    )
    resolved = resolve_weights(ModelSpec("ViT-B-32", str(checkpoint)))
    assert resolved.preprocess.mean == (0.1, 0.2, 0.3)
    assert resolved.preprocess.interpolation == "bilinear"
    assert resolved.preprocess.std is None


def test_bare_local_checkpoint_warns_about_default_preprocessing(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    checkpoint = tmp_path / "ft.pt"
    checkpoint.write_bytes(b"w")
    with caplog.at_level(logging.WARNING):
        resolved = resolve_weights(ModelSpec("ViT-B-32", str(checkpoint)))
    assert resolved.preprocess.mean is None
    assert "--preprocess-tag" in caplog.text


@pytest.mark.parametrize("seed", SEED_MODELS, ids=SEED_IDS)
def test_missing_weights_offline_fail_fast_and_say_what_to_do(
    seed: SeedModel, hub_cache: HubCache
) -> None:
    started = time.monotonic()
    with pytest.raises(WeightsUnavailableError) as info:
        resolve_weights(ModelSpec(seed.model, seed.pretrained))
    assert time.monotonic() - started < 5
    message = str(info.value)
    assert "HF_HUB_OFFLINE" in message
    assert str(hub_cache.root) in message
    assert "models--" + seed_repo(seed).replace("/", "--") in message
    assert f"--preprocess-tag {seed.pretrained}" in message
    assert "--pretrained none" in message


def test_missing_weights_with_unreachable_hub_fail_fast(
    hub_cache: HubCache, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Not offline, but the hub endpoint refuses connections: no retry loop."""
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
    started = time.monotonic()
    with pytest.raises(WeightsUnavailableError, match="cannot be reached"):
        resolve_weights(ModelSpec())
    assert time.monotonic() - started < 5


def test_missing_hub_repo_names_the_config_and_weights(hub_cache: HubCache) -> None:
    with pytest.raises(WeightsUnavailableError, match=r"open_clip_config\.json"):
        resolve_weights(ModelSpec(pretrained="hf-hub:someone/missing-model"))


def test_downloads_disabled_is_reported(
    hub_cache: HubCache, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("HF_HUB_OFFLINE")
    with pytest.raises(WeightsUnavailableError, match="downloads are disabled"):
        resolve_weights(ModelSpec(), allow_download=False)


def test_unknown_tag_lists_the_known_tags() -> None:
    with pytest.raises(UnknownModelError) as info:
        resolve_weights(ModelSpec("ViT-L-14", "laion5b_typo"))
    assert "laion2b_s32b_b82k" in str(info.value)


def test_unknown_architecture_is_refused() -> None:
    with pytest.raises(UnknownModelError, match="not an OpenCLIP architecture"):
        resolve_weights(ModelSpec("ViT-Q-99", "none"))


def test_random_init_needs_no_files() -> None:
    resolved = resolve_weights(ModelSpec("ViT-B-32", "none"))
    assert resolved.checkpoint is None
    assert "random init" in resolved.description
