"""The towers' precision per device, the half-precision cast itself, and the attention path."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.profiler import ProfilerActivity, profile

from clipsearch.encoder import ClipEncoder, load_encoder
from clipsearch.encoder.device import precision_for
from clipsearch.models import ModelSpec
from tests.conftest import TEXTS, TINY


@pytest.mark.parametrize(
    ("device_type", "expected"),
    [("cpu", torch.float32), ("cuda", torch.float16)],
)
def test_precision_for_device(device_type: str, expected: torch.dtype) -> None:
    assert precision_for(device_type) == expected


def test_cpu_keeps_fp32(tiny_encoder: ClipEncoder) -> None:
    assert tiny_encoder.dtype == torch.float32
    model = tiny_encoder.model
    assert isinstance(model, torch.nn.Module)
    assert {p.dtype for p in model.parameters()} == {torch.float32}


def tiny_on_cpu(checkpoint: Path, precision: torch.dtype | None) -> ClipEncoder:
    spec = ModelSpec(model=TINY, pretrained=str(checkpoint), device="cpu")
    return load_encoder(spec, precision=precision)


@pytest.fixture(scope="module", params=[torch.float16, torch.bfloat16], ids=str)
def half_encoder(tiny_checkpoint: Path, request: pytest.FixtureRequest) -> ClipEncoder:
    """The tiny checkpoint in half-precision weights, as on CUDA, but on the CPU."""
    dtype: torch.dtype = request.param
    return tiny_on_cpu(tiny_checkpoint, dtype)


# Measured with the tiny model, min over photos and texts: fp16 0.999999, bf16 0.99993.
MIN_COSINE = {torch.float16: 0.9999, torch.bfloat16: 0.999}


def test_half_precision_weights_match_fp32_on_photos_and_texts(
    tiny_encoder: ClipEncoder, half_encoder: ClipEncoder, photos: dict[str, Image.Image]
) -> None:
    dtype = half_encoder.dtype
    model = half_encoder.model
    assert isinstance(model, torch.nn.Module)
    assert model.visual.conv1.weight.dtype == dtype
    assert model.transformer.resblocks[0].attn.in_proj_weight.dtype == dtype
    images = list(photos.values())
    half = half_encoder.encode_images(images)
    assert half.dtype == np.float32
    assert np.min(np.sum(half * tiny_encoder.encode_images(images), axis=1)) >= MIN_COSINE[dtype]
    texts = half_encoder.encode_texts(TEXTS)
    assert np.min(np.sum(texts * tiny_encoder.encode_texts(TEXTS), axis=1)) >= MIN_COSINE[dtype]


def test_the_temperature_stays_fp32(tiny_encoder: ClipEncoder, half_encoder: ClipEncoder) -> None:
    model = half_encoder.model
    assert isinstance(model, torch.nn.Module)
    assert model.logit_scale.dtype == torch.float32
    assert half_encoder.logit_scale == tiny_encoder.logit_scale


def _attention_ops(run: object) -> set[str]:
    assert callable(run)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        run()
    return {event.key for event in prof.key_averages() if "attention" in event.key}


@pytest.mark.parametrize("precision", [None, torch.float16], ids=["default", "fp16"])
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
