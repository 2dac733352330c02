"""Where a job runs: this machine, or a Ray cluster."""

from __future__ import annotations

from enum import StrEnum


class Engine(StrEnum):
    LOCAL = "local"
    RAY = "ray"
