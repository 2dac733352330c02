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
