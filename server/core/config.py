"""Limits and batching of the service core: what one request may ask for, and how requests
share batches."""

from __future__ import annotations

from dataclasses import dataclass

from clipsearch.encoder import DEFAULT_MAX_PIXELS


@dataclass(frozen=True)
class Limits:
    """What one request may ask for; beyond these it gets INVALID_ARGUMENT."""

    max_top_k: int = 1000
    max_batch_queries: int = 256
    max_labels: int = 1000
    max_templates: int = 64
    max_text_chars: int = 10_000
    max_embed_inputs: int = 256
    max_image_pixels: int = DEFAULT_MAX_PIXELS
    max_effort: int = 65_536
    # Metadata filters: conditions in one filter, all/any/not nesting, values in its lists.
    max_filter_conditions: int = 64
    max_filter_depth: int = 8
    max_filter_values: int = 1024


@dataclass(frozen=True)
class BatchingConfig:
    """Dynamic batching of model and index work across concurrent requests."""

    max_batch: int = 32
    max_wait_ms: float = 2.0
    # Items waiting per stage; beyond it requests get RESOURCE_EXHAUSTED, not longer waits.
    max_queue: int = 1024


@dataclass(frozen=True)
class DeviceDefaults:
    """The server's capacity settings where the model runs on one kind of device."""

    max_concurrent: int  # calls at work at once
    max_waiting: int  # calls queued for a turn beyond those; more are refused
    max_batch: int  # queries encoded or searched together
    max_queue: int  # items waiting per batching stage


# CPU: encoding time grows in step with the batch, so batches past 32 add latency, not
# throughput. CUDA: a ViT-L-14 text batch of 256 runs at 3,140 texts/s on an H200 (issue
# 18), and 256 calls at work keep such a batch full. Both queue three times their
# concurrency, so 4x as many clients as the limit wait for a turn instead of failing.
DEVICE_DEFAULTS: dict[str, DeviceDefaults] = {
    "cpu": DeviceDefaults(max_concurrent=64, max_waiting=192, max_batch=32, max_queue=1024),
    "cuda": DeviceDefaults(max_concurrent=256, max_waiting=768, max_batch=256, max_queue=4096),
}


def device_defaults(device: str) -> DeviceDefaults:
    """The defaults for `device` ("cpu", "cuda" or "cuda:N")."""
    kind = device.partition(":")[0]
    if kind not in DEVICE_DEFAULTS:
        raise ValueError(f"no serving defaults for device {device!r}: expected cpu or cuda[:N]")
    return DEVICE_DEFAULTS[kind]
