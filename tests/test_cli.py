"""The `clipsearch` command line, called in-process through main(argv)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from clipsearch.cli.main import COMMANDS, build_parser, main, subcommands
from tests.conftest import HubCache

SUBCOMMANDS = subcommands(build_parser())


def test_the_commands_a_user_sees() -> None:
    expected = {
        "models",
        "encode",
        "embed",
        "import",
        "build",
        "versions",
        "serve",
        "query",
        "health",
    }
    assert set(SUBCOMMANDS) == expected
    assert len({c.module for c in COMMANDS.values()}) == len(COMMANDS)  # a module each


@pytest.mark.parametrize("name", sorted(SUBCOMMANDS))
def test_every_flag_has_help(name: str) -> None:
    for action in SUBCOMMANDS[name]._actions:
        assert action.help, f"clipsearch {name} {action.option_strings or action.dest}"


@pytest.mark.parametrize("argv", [["--help"], *[[name, "--help"] for name in SUBCOMMANDS]])
def test_help_exits_cleanly(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 0
    assert "usage: clipsearch" in capsys.readouterr().out


def test_encode_writes_unit_vectors_and_prints_similarities(
    tmp_path: Path, photos: dict[str, Image.Image], capsys: pytest.CaptureFixture[str]
) -> None:
    paths = []
    for name in ("chelsea", "rocket"):
        paths.append(tmp_path / f"{name}.jpg")
        photos[name].save(paths[-1])
    out = tmp_path / "vectors.npy"
    argv = [*map(str, paths), "--text", "a cat", "--text", "a rocket", "--out", str(out)]
    code = main(["encode", *argv, "--model", "clipsearch-tiny", "--pretrained", "none"])
    assert code == 0
    vectors = np.load(out)
    assert vectors.shape == (4, 64)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    printed = capsys.readouterr().out
    assert "chelsea.jpg" in printed and "a rocket" in printed
    assert "random init" in printed


def test_user_errors_are_one_message_not_a_traceback(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code = main(["encode", "--text", "x", "--model", "ViT-B-32", "--pretrained", "no_such_tag"])
    assert code == 1
    err = capsys.readouterr().err
    assert "clipsearch: error:" in err and "no_such_tag" in err
    assert "Traceback" not in err


def test_bad_image_is_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    code = main(["encode", str(bad), "--model", "clipsearch-tiny", "--pretrained", "none"])
    assert code == 1
    assert "broken.jpg" in capsys.readouterr().err


def test_models_reports_cache_state_offline(
    hub_cache: HubCache, capsys: pytest.CaptureFixture[str]
) -> None:
    hub_cache.add_file("laion/CLIP-ViT-L-14-laion2B-s32B-b82K", "open_clip_model.safetensors", b"w")
    assert main(["models"]) == 0
    lines = capsys.readouterr().out.splitlines()
    vit_l = next(line for line in lines if line.startswith("ViT-L-14"))
    vit_g = next(line for line in lines if line.startswith("ViT-g-14"))
    assert "cached:" in vit_l and str(hub_cache.root) in vit_l and "768" in vit_l
    assert "not cached" in vit_g and "1024" in vit_g
