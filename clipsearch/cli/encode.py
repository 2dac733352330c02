"""`clipsearch encode`: embed a few images and texts and show how they match."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from clipsearch.cli.args import add_model_arguments, model_spec
from clipsearch.encoder import load_encoder, read_image


def register(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Embed image files and texts, print the cosine similarity of every text to "
        "every image, and optionally save the vectors. Useful to check a model loads and "
        "behaves before embedding a collection."
    )
    parser.add_argument("images", nargs="*", type=Path, help="image files to embed")
    parser.add_argument(
        "--text", action="append", default=[], help="a text to embed (repeat for more)"
    )
    parser.add_argument(
        "--out",
        type=Path,
        help="save the vectors to this .npy file: images first, then texts, one row each",
    )
    add_model_arguments(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    if not args.images and not args.text:
        raise SystemExit("clipsearch encode: give at least one image path or --text")
    encoder = load_encoder(model_spec(args))
    print(f"model: {encoder.info.weights} on {encoder.info.device}, dim {encoder.dim}")
    image_vectors = encoder.encode_images([read_image(p) for p in args.images])
    text_vectors = encoder.encode_texts(args.text)
    if args.images and args.text:
        names = [p.name for p in args.images]
        print(similarity_table(names, args.text, image_vectors @ text_vectors.T))
    if args.out:
        np.save(args.out, np.concatenate([image_vectors, text_vectors]))
        print(f"wrote {len(image_vectors) + len(text_vectors)} vectors to {args.out}")
    return 0


def similarity_table(images: list[str], texts: list[str], scores: np.ndarray) -> str:
    """Cosine similarities, one row per image and a numbered column per text; best marked *."""
    legend = [f"  T{i + 1}: {text}" for i, text in enumerate(texts)]
    label = max(len(name) for name in images)
    header = " " * label + "".join(f"  {f'T{i + 1}':>7}" for i in range(len(texts)))
    best = scores.argmax(axis=0)
    rows = []
    for row, (name, values) in enumerate(zip(images, scores, strict=True)):
        cells = "".join(
            f"  {value:>6.3f}{'*' if best[col] == row else ' '}" for col, value in enumerate(values)
        )
        rows.append(f"{name:<{label}}{cells}")
    return "\n".join(["texts:", *legend, "", header, *rows, "(* = best image for that text)"])
