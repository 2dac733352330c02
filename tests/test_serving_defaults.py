"""Capacity defaults sized for the device the model runs on, shown in `serve --help` and
overridden by flags."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from clipsearch.cli.main import build_parser
from clipsearch.cli.serve import config_from_args
from clipsearch.server.core.config import DeviceDefaults, device_defaults

CPU = DeviceDefaults(max_concurrent=64, max_waiting=192, max_batch=32, max_queue=1024)
CUDA = DeviceDefaults(max_concurrent=256, max_waiting=768, max_batch=256, max_queue=4096)


@pytest.mark.parametrize(
    ("device", "expected"),
    [("cpu", CPU), ("cuda", CUDA), ("cuda:0", CUDA), ("cuda:3", CUDA)],
)
def test_defaults_by_device(device: str, expected: DeviceDefaults) -> None:
    assert device_defaults(device) == expected


@pytest.mark.parametrize("device", ["mps", "tpu", "", "auto"])
def test_a_device_without_defaults_is_refused(device: str) -> None:
    with pytest.raises(ValueError, match="cpu or cuda"):
        device_defaults(device)


@pytest.mark.parametrize("defaults", [CPU, CUDA])
def test_the_defaults_queue_4x_the_limit_and_fit_a_batch(defaults: DeviceDefaults) -> None:
    """256 clients at once: on CUDA all at work; on CPU all admitted, a quarter at work."""
    assert defaults.max_concurrent + defaults.max_waiting == 4 * defaults.max_concurrent
    assert defaults.max_concurrent + defaults.max_waiting >= 256
    assert defaults.max_queue >= defaults.max_concurrent >= defaults.max_batch


def _serve_args(*flags: str) -> list[str]:
    return ["serve", "--index", str(Path("/srv/index")), *flags]


def test_help_shows_both_devices_defaults(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["serve", "--help"])
    shown = " ".join(capsys.readouterr().out.split())
    assert "(default: 64 on CPU, 256 on CUDA)" in shown  # --max-concurrent
    assert "(default: 192 on CPU, 768 on CUDA)" in shown  # --max-waiting
    assert "(default: 32 on CPU, 256 on CUDA)" in shown  # --max-batch


def test_serve_on_cpu_gets_the_cpu_defaults() -> None:
    config = config_from_args(build_parser().parse_args(_serve_args("--device", "cpu")))
    assert (config.max_concurrent_rpcs, config.max_waiting_rpcs) == (64, 192)
    assert (config.batching.max_batch, config.batching.max_queue) == (32, 1024)


def test_auto_sizes_for_the_device_this_host_has() -> None:
    config = config_from_args(build_parser().parse_args(_serve_args()))
    expected = CUDA if torch.cuda.is_available() else CPU
    assert config.max_concurrent_rpcs == expected.max_concurrent
    assert config.batching.max_batch == expected.max_batch


def test_flags_override_the_device_defaults() -> None:
    flags = ["--device", "cpu", "--max-concurrent", "8", "--max-waiting", "0"]
    flags += ["--max-batch", "4", "--max-queue", "100"]
    config = config_from_args(build_parser().parse_args(_serve_args(*flags)))
    assert (config.max_concurrent_rpcs, config.max_waiting_rpcs) == (8, 0)
    assert (config.batching.max_batch, config.batching.max_queue) == (4, 100)
