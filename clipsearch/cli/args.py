"""Flag groups several subcommands share: the model to load, the server to reach, where a
job runs. Each group's defaults come from the typed config it fills."""

from __future__ import annotations

import argparse
from pathlib import Path

from clipsearch.client import DEFAULT_TARGET, ClientTls
from clipsearch.models import DEFAULT_MODEL, DEFAULT_PRETRAINED, ModelSpec


def add_model_arguments(parser: argparse.ArgumentParser, required: bool = True) -> None:
    """--model, --pretrained, --preprocess-tag, --device. With `required=False` the model
    flags default to None (`clipsearch serve`: the model the index was built with)."""
    title = "model" if required else "model (default: the one the index was built with)"
    group = parser.add_argument_group(title)
    model_default = f" (default: {DEFAULT_MODEL})" if required else ""
    group.add_argument(
        "--model",
        default=DEFAULT_MODEL if required else None,
        help=f"OpenCLIP architecture, e.g. ViT-L-14 or ViT-g-14{model_default}",
    )
    pretrained_default = f" (default: {DEFAULT_PRETRAINED})" if required else ""
    group.add_argument(
        "--pretrained",
        default=DEFAULT_PRETRAINED if required else None,
        help="weights: a pretrained tag of --model (e.g. laion2b_s32b_b82k, laion2b_s34b_b88k), "
        f"an hf-hub:ORG/REPO id, a local checkpoint file, or 'none' for random weights"
        f"{pretrained_default}",
    )
    group.add_argument(
        "--preprocess-tag",
        metavar="TAG",
        help="for a local checkpoint file: the pretrained tag it came from, whose preprocessing "
        "(mean/std, interpolation, resize) it must use",
    )
    group.add_argument(
        "--device",
        default=ModelSpec().device,
        help="auto (CUDA if present, else CPU), cpu, cuda or cuda:N (default: auto)",
    )


def model_spec(args: argparse.Namespace) -> ModelSpec:
    """The model the flags name, defaults filling what they leave out."""
    defaults = ModelSpec()
    return ModelSpec(
        model=args.model or defaults.model,
        pretrained=args.pretrained or defaults.pretrained,
        preprocess_tag=args.preprocess_tag,
        device=args.device,
    )


def named_model(args: argparse.Namespace) -> ModelSpec | None:
    """The model the flags name, or None when they name none (flags added with
    `required=False`)."""
    if args.model is None and args.pretrained is None:
        return None
    return model_spec(args)


def add_connection_arguments(parser: argparse.ArgumentParser, timeout_s: float) -> None:
    group = parser.add_argument_group("connection")
    group.add_argument(
        "--server", default=DEFAULT_TARGET, help=f"HOST:PORT (default: {DEFAULT_TARGET})"
    )
    group.add_argument(
        "--timeout", type=float, default=timeout_s, help=f"seconds (default: {timeout_s:g})"
    )
    group.add_argument("--tls-ca", type=Path, help="connect over TLS, trusting this PEM CA")
    group.add_argument("--tls-cert", type=Path, help="client certificate for mutual TLS")
    group.add_argument("--tls-key", type=Path, help="private key of --tls-cert")


def client_tls(args: argparse.Namespace) -> ClientTls | None:
    if args.tls_ca or args.tls_cert:
        return ClientTls(args.tls_ca, args.tls_cert, args.tls_key)
    return None


def add_engine_arguments(parser: argparse.ArgumentParser, ray_does: str) -> None:
    # The engine names are spelled here, not imported, so `--help` needs no indexer import.
    parser.add_argument(
        "--engine",
        choices=["local", "ray"],
        default="local",
        help=f"local: this machine; ray: {ray_does} (default: local)",
    )
    parser.add_argument(
        "--ray-address",
        help="with --engine ray: the cluster to join, e.g. ray://head:10001 (default: "
        "$RAY_ADDRESS when set, as inside a KubeRay RayJob; else a local Ray instance)",
    )
