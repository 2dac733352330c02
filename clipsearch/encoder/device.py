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


def precision_for(device_type: str, bf16_supported: bool) -> torch.dtype:
    """The dtype the towers' weights are held in on a device of `device_type`.

    CPU keeps fp32: its half-precision kernels are slower, not faster. On CUDA the
    weights themselves are cast (not autocast over fp32 weights, which re-casts every
    weight on every call and keeps nn.MultiheadAttention off its fused fast path).
    bf16 where the chip has it (its fp32 range never overflows on trained weights),
    fp16 otherwise.
    """
    if device_type != "cuda":
        return torch.float32
    return torch.bfloat16 if bf16_supported else torch.float16


def device_precision(device: torch.device) -> torch.dtype:
    """`precision_for` this host's `device`."""
    bf16 = device.type == "cuda" and torch.cuda.is_bf16_supported()
    return precision_for(device.type, bf16)
