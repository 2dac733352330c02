"""The towers' precision per device, the half-precision cast itself, and the attention path."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.profiler import ProfilerActivity, profile

from clipsearch.encoder import ClipEncoder, load_encoder
from clipsearch.encoder.device import device_precision, precision_for
from clipsearch.models import ModelSpec
from tests.conftest import TEXTS, TINY


@pytest.mark.parametrize(
    ("device_type", "bf16_supported", "expected"),
    [
        ("cpu", False, torch.float32),
        ("cpu", True, torch.float32),  # CPU half kernels are slower: keep the exact path
        ("cuda", True, torch.bfloat16),
        ("cuda", False, torch.float16),
    ],
)
def test_precision_for_device(
    device_type: str, bf16_supported: bool, expected: torch.dtype
) -> None:
    assert precision_for(device_type, bf16_supported) == expected


def test_cpu_keeps_fp32(tiny_encoder: ClipEncoder) -> None:
    assert device_precision(torch.device("cpu")) == torch.float32
    assert tiny_encoder.dtype == torch.float32
    model = tiny_encoder.model
    assert isinstance(model, torch.nn.Module)
    assert {p.dtype for p in model.parameters()} == {torch.float32}


def tiny_on_cpu(checkpoint: Path, precision: torch.dtype | None) -> ClipEncoder:
    spec = ModelSpec(model=TINY, pretrained=str(checkpoint), device="cpu")
    return load_encoder(spec, precision=precision)


@pytest.fixture(scope="module")
def bf16_encoder(tiny_checkpoint: Path) -> ClipEncoder:
    """The tiny checkpoint in half-precision weights, as on CUDA, but on the CPU."""
    return tiny_on_cpu(tiny_checkpoint, torch.bfloat16)


def test_half_precision_weights_match_fp32_on_photos_and_texts(
    tiny_encoder: ClipEncoder, bf16_encoder: ClipEncoder, photos: dict[str, Image.Image]
) -> None:
    model = bf16_encoder.model
    assert isinstance(model, torch.nn.Module)
    assert model.visual.conv1.weight.dtype == torch.bfloat16
    assert model.transformer.resblocks[0].attn.in_proj_weight.dtype == torch.bfloat16
    images = list(photos.values())
    half = bf16_encoder.encode_images(images)
    full = tiny_encoder.encode_images(images)
    assert half.dtype == np.float32
    # Measured with this model: 0.99997 (images), 0.99993 (texts).
    assert np.min(np.sum(half * full, axis=1)) >= 0.999
    texts = bf16_encoder.encode_texts(TEXTS)
    assert np.min(np.sum(texts * tiny_encoder.encode_texts(TEXTS), axis=1)) >= 0.999


def test_the_temperature_stays_fp32(tiny_encoder: ClipEncoder, bf16_encoder: ClipEncoder) -> None:
    model = bf16_encoder.model
    assert isinstance(model, torch.nn.Module)
    assert model.logit_scale.dtype == torch.float32
    assert bf16_encoder.logit_scale == tiny_encoder.logit_scale


def _attention_ops(run: object) -> set[str]:
    assert callable(run)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        run()
    return {event.key for event in prof.key_averages() if "attention" in event.key}


@pytest.mark.parametrize("precision", [None, torch.bfloat16], ids=["default", "bf16"])
def test_attention_takes_the_fused_paths(
    tiny_checkpoint: Path, precision: torch.dtype | None
) -> None:
    """The image tower takes nn.MultiheadAttention's native fast path (on CUDA it runs
    scaled_dot_product_attention; autocast or mismatched dtypes would disable it); the
    text tower's float causal mask keeps it on the Python path, which calls SDPA."""
    encoder = tiny_on_cpu(tiny_checkpoint, precision)
    pixels = torch.rand(2, 3, 224, 224)
    image_ops = _attention_ops(lambda: encoder.encode_pixels(pixels))
    text_ops = _attention_ops(lambda: encoder.encode_texts(["a cat", "a dog on a mat"]))
    assert "aten::_native_multi_head_attention" in image_ops
    assert "aten::scaled_dot_product_attention" in text_ops
