"""clipsearch's embeddings must equal OpenCLIP's own reference path."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import open_clip
import pytest
import torch
from PIL import Image
from torch.profiler import ProfilerActivity, profile

from clipsearch.encoder import ClipEncoder, load_encoder
from clipsearch.models import SEED_MODELS, ModelSpec
from tests.conftest import TEXTS, TINY, HubCache, reference_embeddings, save_random_model

TOLERANCE = 1e-4


def test_tiny_model_matches_openclip_reference(
    tiny_encoder: ClipEncoder, tiny_checkpoint: Path, photos: dict[str, Image.Image]
) -> None:
    model, _, preprocess = open_clip.create_model_and_transforms(
        TINY, pretrained=str(tiny_checkpoint)
    )
    images = list(photos.values())
    ref_images, ref_texts = reference_embeddings(
        model.eval(), preprocess, images, list(TEXTS), TINY
    )

    ours_images = tiny_encoder.encode_images(images)
    ours_texts = tiny_encoder.encode_texts(TEXTS)

    assert ours_images.dtype == np.float32 and ours_images.shape == ref_images.shape
    np.testing.assert_allclose(ours_images, ref_images, atol=TOLERANCE, rtol=0)
    np.testing.assert_allclose(ours_texts, ref_texts, atol=TOLERANCE, rtol=0)
    np.testing.assert_allclose(np.linalg.norm(ours_images, axis=1), 1.0, atol=1e-5)


def test_encoded_bytes_match_pil_input(
    tiny_encoder: ClipEncoder, photos: dict[str, Image.Image], tmp_path: Path
) -> None:
    image = photos["chelsea"]
    path = tmp_path / "cat.png"
    image.save(path)
    from_bytes = tiny_encoder.encode_images([path.read_bytes()])
    from_pil = tiny_encoder.encode_images([image])
    np.testing.assert_allclose(from_bytes, from_pil, atol=1e-6)


def test_batches_split_by_batch_size_give_the_same_vectors(
    tiny_encoder: ClipEncoder, photos: dict[str, Image.Image]
) -> None:
    images = list(photos.values())
    whole = tiny_encoder.encode_images(images)
    small = ClipEncoder(
        tiny_encoder.model,
        tiny_encoder.transform,
        tiny_encoder.tokenizer,
        tiny_encoder.info,
        tiny_encoder.device,
        batch_size=2,
    )
    np.testing.assert_allclose(small.encode_images(images), whole, atol=TOLERANCE)
    assert tiny_encoder.encode_images([]).shape == (0, tiny_encoder.dim)
    assert tiny_encoder.encode_texts([]).shape == (0, tiny_encoder.dim)


@pytest.mark.parametrize("seed", SEED_MODELS, ids=lambda s: f"{s.model}-{s.pretrained}")
def test_seed_preprocessing_through_hub_repo_matches_reference(
    seed: object,
    hub_cache: HubCache,
    tiny_checkpoint: Path,
    photos: dict[str, Image.Image],
) -> None:
    """A tiny model published with a seed model's preprocessing, loaded by its hf-hub id."""
    cfg = open_clip.get_pretrained_cfg(seed.model, seed.pretrained)  # type: ignore[attr-defined]
    preprocess_cfg = {k: cfg[k] for k in ("mean", "std", "interpolation", "resize_mode")}
    repo = "clipsearch-test/tiny-with-seed-preprocessing"
    hub_cache.add_model(
        repo,
        tiny_checkpoint,
        {"model_cfg": open_clip.get_model_config(TINY), "preprocess_cfg": preprocess_cfg},
    )
    encoder = load_encoder(ModelSpec(pretrained=f"hf-hub:{repo}", device="cpu"))

    model, _, preprocess = open_clip.create_model_and_transforms(
        TINY,
        pretrained=str(tiny_checkpoint),
        image_mean=cfg["mean"],
        image_std=cfg["std"],
        image_interpolation=cfg["interpolation"],
        image_resize_mode=cfg["resize_mode"],
    )
    images = list(photos.values())
    ref_images, ref_texts = reference_embeddings(model.eval(), preprocess, images, ["a cat"], TINY)

    assert encoder.info.preprocess.mean == tuple(cfg["mean"])
    assert encoder.info.model == f"hf-hub:{repo}"
    np.testing.assert_allclose(encoder.encode_images(images), ref_images, atol=TOLERANCE)
    np.testing.assert_allclose(encoder.encode_texts(["a cat"]), ref_texts, atol=TOLERANCE)


@pytest.mark.slow
def test_default_seed_model_loads_offline_from_hub_cache_by_tag(
    hub_cache: HubCache, tmp_path: Path, photos: dict[str, Image.Image]
) -> None:
    """The real ViT-L-14 architecture, random weights, found by tag in an offline cache."""
    seed = SEED_MODELS[0]
    cfg = open_clip.get_pretrained_cfg(seed.model, seed.pretrained)
    weights = tmp_path / "weights.safetensors"
    # fp16 on disk halves the 1.7 GB file; the reference model holds the same rounded weights.
    model = save_random_model(seed.model, weights, dtype=torch.float16)
    hub_cache.add_model(cfg["hf_hub"].rstrip("/"), weights)

    encoder = load_encoder(ModelSpec(device="cpu"))  # the defaults: ViT-L-14 / laion2b_s32b_b82k

    assert encoder.info.dim == 768
    assert encoder.info.preprocess.mean == tuple(cfg["mean"])
    assert encoder.info.preprocess.std == tuple(cfg["std"])
    assert str(hub_cache.root) in encoder.info.weights
    _, _, preprocess = open_clip.create_model_and_transforms(
        seed.model, image_mean=cfg["mean"], image_std=cfg["std"]
    )
    image = photos["astronaut"]
    ref_images, ref_texts = reference_embeddings(
        model.eval(), preprocess, [image], ["an astronaut"], seed.model
    )
    np.testing.assert_allclose(encoder.encode_images([image]), ref_images, atol=TOLERANCE)
    np.testing.assert_allclose(encoder.encode_texts(["an astronaut"]), ref_texts, atol=TOLERANCE)


def test_random_init_is_the_same_in_every_process(photos: dict[str, Image.Image]) -> None:
    """Indexer and server load `--pretrained none` separately; their vectors must agree."""
    torch.manual_seed(123)
    before = torch.rand(1)
    first = load_encoder(ModelSpec(model=TINY, pretrained="none", device="cpu"))
    second = load_encoder(ModelSpec(model=TINY, pretrained="none", device="cpu"))
    image = [photos["coffee"]]
    np.testing.assert_array_equal(first.encode_images(image), second.encode_images(image))
    torch.manual_seed(123)
    assert torch.rand(1) == before  # the caller's RNG stream is untouched


@pytest.mark.slow
def test_trimmed_text_batches_match_the_full_context() -> None:
    """Cutting a batch to its longest sequence must not change any vector (ViT-B-32)."""
    encoder = load_encoder(ModelSpec(model="ViT-B-32", pretrained="none", device="cpu"))
    assert encoder.trim_text
    texts = ["a dog", "a red bicycle in the snow, photographed at dusk", "x " * 100, ""]
    trimmed = encoder.encode_texts(texts)
    singles = np.concatenate([encoder.encode_texts([t]) for t in texts])
    encoder.trim_text = False
    full = encoder.encode_texts(texts)
    np.testing.assert_allclose(trimmed, full, atol=TOLERANCE, rtol=0)
    np.testing.assert_allclose(singles, full, atol=TOLERANCE, rtol=0)


@pytest.mark.gpu
def test_cuda_half_precision_matches_cpu_fp32(
    tiny_encoder: ClipEncoder, tiny_checkpoint: Path, photos: dict[str, Image.Image]
) -> None:
    """The default CUDA path (half-precision weights) against the CPU's fp32, same weights."""
    cuda = load_encoder(ModelSpec(model=TINY, pretrained=str(tiny_checkpoint), device="cuda"))
    assert cuda.dtype == torch.float16
    images = list(photos.values())
    image_cos = np.sum(cuda.encode_images(images) * tiny_encoder.encode_images(images), axis=1)
    text_cos = np.sum(cuda.encode_texts(TEXTS) * tiny_encoder.encode_texts(TEXTS), axis=1)
    assert image_cos.min() >= 0.9999
    assert text_cos.min() >= 0.9999


@pytest.mark.gpu
def test_cuda_image_attention_is_fused(tiny_checkpoint: Path) -> None:
    cuda = load_encoder(ModelSpec(model=TINY, pretrained=str(tiny_checkpoint), device="cuda"))
    pixels = torch.rand(4, 3, 224, 224)
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        cuda.encode_pixels(pixels)
    ops = {event.key for event in prof.key_averages()}
    assert "aten::_native_multi_head_attention" in ops
    assert "aten::scaled_dot_product_attention" in ops


@pytest.mark.gpu
def test_cuda_batches_queued_ahead_give_their_own_vectors(
    tiny_checkpoint: Path, photos: dict[str, Image.Image]
) -> None:
    """The embed loop queues a batch before awaiting the previous one's vectors."""
    cuda = load_encoder(ModelSpec(model=TINY, pretrained=str(tiny_checkpoint), device="cuda"))
    pixels = torch.stack([cuda.preprocess(image) for image in photos.values()])
    first, second = cuda.start_pixels(pixels[:2]), cuda.start_pixels(pixels[2:])
    queued = np.concatenate([first.result(), second.result()])
    one_by_one = [cuda.encode_pixels(pixels[:2]), cuda.encode_pixels(pixels[2:])]
    np.testing.assert_allclose(queued, np.concatenate(one_by_one), atol=1e-5)
