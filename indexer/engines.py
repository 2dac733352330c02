"""Where a job runs: this machine, or a Ray cluster; and the flags that choose it."""

from __future__ import annotations

import argparse
from enum import StrEnum


class Engine(StrEnum):
    LOCAL = "local"
    RAY = "ray"


def add_engine_arguments(parser: argparse.ArgumentParser, ray_does: str) -> None:
    parser.add_argument(
        "--engine",
        type=Engine,
        choices=list(Engine),
        default=Engine.LOCAL,
        help=f"local: this machine; ray: {ray_does} (default: local)",
    )
    parser.add_argument(
        "--ray-address",
        help="with --engine ray: the cluster to join, e.g. ray://head:10001 (default: "
        "$RAY_ADDRESS when set, as inside a KubeRay RayJob; else a local Ray instance)",
    )
