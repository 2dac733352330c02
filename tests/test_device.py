"""Device selection: CUDA chosen automatically when present, CPU otherwise."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from clipsearch.encoder import ClipEncoder, select_device
from clipsearch.encoder.device import DeviceUnavailableError


def test_auto_is_cpu_without_cuda(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert select_device("auto") == torch.device("cpu")


def test_auto_picks_cuda_when_present(monkeypatch: pytest.MonkeyPatch) -> None:
    # A GPU cannot exist here: only the availability probe is faked.
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert select_device("auto") == torch.device("cuda")


def test_missing_cuda_is_refused_with_advice(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(DeviceUnavailableError, match="--device cpu"):
        select_device("cuda")


def test_cuda_index_out_of_range(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    with pytest.raises(DeviceUnavailableError, match="1 CUDA device"):
        select_device("cuda:3")


def test_unknown_device_type() -> None:
    with pytest.raises(DeviceUnavailableError):
        select_device("meta")


@pytest.mark.gpu
def test_cuda_encoding_matches_cpu(
    tiny_encoder: ClipEncoder, photos: dict[str, Image.Image]
) -> None:
    cuda = ClipEncoder(
        tiny_encoder.model.to("cuda"),
        tiny_encoder.transform,
        tiny_encoder.tokenizer,
        tiny_encoder.info,
        torch.device("cuda"),
    )
    try:
        gpu_vectors = cuda.encode_images(list(photos.values()))
    finally:
        tiny_encoder.model.to("cpu")
    cpu_vectors = tiny_encoder.encode_images(list(photos.values()))
    np.testing.assert_allclose(gpu_vectors, cpu_vectors, atol=5e-3)  # fp16 autocast
