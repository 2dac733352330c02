"""The model flags every subcommand that loads a CLIP model shares."""

from __future__ import annotations

import argparse

from clipsearch.encoder import DEFAULT_MODEL, DEFAULT_PRETRAINED, ModelSpec


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("model")
    group.add_argument(
        "--model",
        default=DEFAULT_MODEL,
        help=f"OpenCLIP architecture, e.g. ViT-L-14 or ViT-g-14 (default: {DEFAULT_MODEL})",
    )
    group.add_argument(
        "--pretrained",
        default=DEFAULT_PRETRAINED,
        help="weights: a pretrained tag of --model (e.g. laion2b_s32b_b82k, laion2b_s34b_b88k), "
        "an hf-hub:ORG/REPO id, a local checkpoint file, or 'none' for random weights "
        f"(default: {DEFAULT_PRETRAINED})",
    )
    group.add_argument(
        "--preprocess-tag",
        metavar="TAG",
        help="for a local checkpoint file: the pretrained tag it came from, whose preprocessing "
        "(mean/std, interpolation, resize) it must use",
    )
    group.add_argument(
        "--device",
        default="auto",
        help="auto (CUDA if present, else CPU), cpu, cuda or cuda:N (default: auto)",
    )


def spec_from_args(args: argparse.Namespace) -> ModelSpec:
    return ModelSpec(
        model=args.model,
        pretrained=args.pretrained,
        preprocess_tag=args.preprocess_tag,
        device=args.device,
    )
