"""`make demo`: the main job on sample images, through the real CLI.

Encode, embed into shards, build the index, start the server, query it by text, by
image and classify an image, then stop the server with SIGTERM.

Uses the default model when its weights are on this host (or `--download` is given);
otherwise random-init ViT-B-32, said plainly, so the demo runs offline on a fresh machine.
"""

from __future__ import annotations

import argparse
import contextlib
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import conformal_clip_data
from PIL import Image
from skimage import data as skdata

from clipsearch.cli.main import main as clipsearch
from clipsearch.encoder import WeightsUnavailableError, resolve_weights
from clipsearch.models import ModelSpec

PHOTOS = {
    "astronaut": "an astronaut in a space suit",
    "coffee": "a cup of coffee",
    "chelsea": "a photo of a cat",
    "rocket": "a rocket on the launch pad",
    "hubble_deep_field": "galaxies in deep space",
}
TEXTILE_CLASSES = ("nominal", "local", "global")
FALLBACK = ["--model", "ViT-B-32", "--pretrained", "none"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--workdir", type=Path, default=Path("demo-output"))
    parser.add_argument(
        "--download", action="store_true", help="download the default model if not cached"
    )
    args = parser.parse_args(argv)
    images = write_sample_images(args.workdir / "images")
    model_args = choose_model(args.download)
    texts = [arg for caption in PHOTOS.values() for arg in ("--text", caption)]
    print(f"\n== Encoding {len(images)} images and {len(PHOTOS)} texts ==", flush=True)
    vectors = args.workdir / "vectors.npy"
    steps = [
        ["encode", *map(str, images), *texts, "--out", str(vectors), *model_args],
        ["embed", str(args.workdir / "images"), "--out", str(args.workdir / "shards"),
         "--quiet", *model_args],
        ["build", str(args.workdir / "shards"), "--out", str(args.workdir / "index"),
         "--eval-queries", "50"],
    ]  # fmt: skip
    titles = ["", "Embedding the sample collection into Parquet shards", "Building the index"]
    for title, step in zip(titles, steps, strict=True):
        if title:
            print(f"\n== {title} ==", flush=True)
        if (code := clipsearch(step)) != 0:
            return code
    code = serve_and_query(args.workdir)
    if code == 0:
        print(next_steps())
    return code


def next_steps() -> str:
    """What to run on one's own photos, with the command's real path."""
    command = Path(sys.executable).parent / "clipsearch"
    with contextlib.suppress(ValueError):  # shorter when it lives under this folder
        command = command.relative_to(Path.cwd())
    return "\n".join(
        [
            "",
            "== Next: search your own photos ==",
            f"The command is {command} (`source {command.parent}/activate` puts `clipsearch` "
            "on your PATH):",
            f"  {command} embed ~/Pictures --out my-shards",
            f"  {command} build my-shards --out my-index",
            f"  {command} serve --index my-index --http-port 8080    # then open "
            "http://localhost:8080",
        ]
    )


def serve_and_query(workdir: Path) -> int:
    """Start `clipsearch serve` on a free port, query it three ways, stop it with SIGTERM."""
    print("\n== Starting the server ==", flush=True)
    server = subprocess.Popen(
        [sys.executable, "-m", "clipsearch.cli.main", "serve", "--index", str(workdir / "index"),
         "--port", "0", "--metrics-port", "-1"],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert server.stdout is not None
        line = server.stdout.readline()
        if "serving on" not in line:
            print("clipsearch: the server did not start", file=sys.stderr)
            return 1
        target = line.rsplit(" ", 1)[-1].strip()
        images = workdir / "images"
        queries = [
            ("What is served", ["--info"]),
            ("Text query: 'a photo of a cat'", ["--text", "a photo of a cat", "--top-k", "3"]),
            ("Image query: chelsea.jpg", ["--image", str(images / "chelsea.jpg"), "--top-k", "3"]),
            ("Classify coffee.jpg", ["--classify", str(images / "coffee.jpg"),
                                     "--labels", "a cat,a cup of coffee,a rocket,an astronaut"]),
        ]  # fmt: skip
        for title, query in queries:
            print(f"\n== {title} ==", flush=True)
            if (code := clipsearch(["query", "--server", target, *query])) != 0:
                return code
    finally:
        server.send_signal(signal.SIGTERM)
        exit_code = server.wait(timeout=60)
    print(f"\n== Server stopped (exit {exit_code}) ==")
    return exit_code


def write_sample_images(folder: Path) -> list[Path]:
    """Real photographs from scikit-image and a few textile images, as JPEG files."""
    for stale in (folder, folder.parent / "shards", folder.parent / "index"):
        shutil.rmtree(stale, ignore_errors=True)
    folder.mkdir(parents=True)
    paths = []
    for name in PHOTOS:
        path = folder / f"{name}.jpg"
        Image.fromarray(getattr(skdata, name)()).convert("RGB").save(path, quality=92)
        paths.append(path)
    root = conformal_clip_data.textile_simulated_root()
    for cls in TEXTILE_CLASSES:
        source = sorted((root / cls).glob("*.jpg"))[0]
        paths.append(Path(shutil.copy(source, folder / f"textile-{cls}.jpg")))
    return paths


def choose_model(download: bool) -> list[str]:
    spec = ModelSpec()
    try:
        resolved = resolve_weights(spec, allow_download=download)
    except WeightsUnavailableError as err:
        print(
            f"== Weights: no cached weights for {spec.model}/{spec.pretrained} "
            f"({str(err).splitlines()[0]})\n"
            "== Using RANDOM-INIT ViT-B-32 instead: the pipeline is real, the similarities are "
            "meaningless. Run `clipsearch models` and see README 'Offline hosts' for real weights."
        )
        return FALLBACK
    print(f"== Weights: {resolved.description}")
    return ["--model", spec.model, "--pretrained", spec.pretrained]


if __name__ == "__main__":
    sys.exit(main())
