"""Joining Ray, the same way for both steps: the embed engine and the build's parallel add."""

from __future__ import annotations

import ray


def connect(address: str | None) -> None:
    """Join the cluster at `address` (None: Ray's default, a local instance) unless this
    process already has; workers' logs stay out of the driver's output."""
    if not ray.is_initialized():
        ray.init(address=address, log_to_driver=False, include_dashboard=False)
