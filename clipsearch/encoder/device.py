"""Choosing the torch device: CUDA when there is one, CPU otherwise."""

from __future__ import annotations

import torch

from clipsearch.errors import ClipsearchError


class DeviceUnavailableError(ClipsearchError, ValueError):
    """The requested device does not exist on this host."""


def select_device(requested: str = "auto") -> torch.device:
    """Resolve `auto`, `cpu`, `cuda` or `cuda:N`, refusing a CUDA device that is not there."""
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(requested)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise DeviceUnavailableError(
                f"--device {requested}: no CUDA device is available on this host; "
                "use --device cpu or --device auto"
            )
        index = device.index or 0
        if index >= torch.cuda.device_count():
            raise DeviceUnavailableError(
                f"--device {requested}: this host has {torch.cuda.device_count()} CUDA device(s)"
            )
    elif device.type != "cpu":
        raise DeviceUnavailableError(f"--device {requested}: expected auto, cpu, cuda or cuda:N")
    return device


def precision_for(device_type: str) -> torch.dtype:
    """The dtype the towers' weights are held in on a device of `device_type`.

    CPU keeps fp32, the exact path: its half-precision kernels are slower, not faster.
    CUDA holds the weights themselves in fp16 (autocast over fp32 weights re-cast every
    weight on every call and kept nn.MultiheadAttention off its fused fast path). Not
    bf16, though it is a little faster on Hopper (2,690 vs 2,593 ViT-L-14 img/s): its
    3 fewer mantissa bits miss the 0.9999 minimum cosine against fp32 on ViT-g-14 (images
    0.99989, texts 0.99991; fp16 0.999998 and 0.999998; random init, skimage photos,
    measured on CPU). `load_encoder(precision=)` overrides.
    """
    return torch.float16 if device_type == "cuda" else torch.float32
