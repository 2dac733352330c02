"""`clipsearch models`: the seed models and whether their weights are on this host."""

from __future__ import annotations

import argparse

import open_clip

from clipsearch.cli.args import add_model_arguments, model_spec
from clipsearch.encoder import WeightsUnavailableError, resolve_weights
from clipsearch.encoder.weights import hub_cache_dir
from clipsearch.models import SEED_MODELS, ModelSpec


def register(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "List the seed models, their dimensions, and whether their weights are in "
        "the Hugging Face cache (checked offline: nothing is downloaded). With --download, "
        "fetch the weights of --model/--pretrained into the cache first (e.g. when building "
        "a container image with the weights baked in)."
    )
    parser.add_argument(
        "--download",
        action="store_true",
        help="download the weights of --model/--pretrained into the Hugging Face cache",
    )
    add_model_arguments(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    if args.download:
        resolved = resolve_weights(model_spec(args), allow_download=True)
        print(f"downloaded: {resolved.description}")
    print(f"Hugging Face cache: {hub_cache_dir()}")
    header = f"{'MODEL':<10} {'PRETRAINED':<20} {'DIM':>5} {'TOP-1':>6}  WEIGHTS"
    print(header)
    for seed in SEED_MODELS:
        dim = open_clip.get_model_config(seed.model)["embed_dim"]
        try:
            resolved = resolve_weights(ModelSpec(seed.model, seed.pretrained), allow_download=False)
            status = f"cached: {resolved.checkpoint}"
        except WeightsUnavailableError:
            status = "not cached (downloaded on first use; see README 'Offline hosts')"
        top1 = f"{seed.imagenet_top1:.1%}"
        print(f"{seed.model:<10} {seed.pretrained:<20} {dim:>5} {top1:>6}  {status}")
    return 0
