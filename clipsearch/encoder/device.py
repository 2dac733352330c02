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
