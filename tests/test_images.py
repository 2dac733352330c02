"""Decoding untrusted bytes: every mode to correct RGB, every bad input to a typed error."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from clipsearch.encoder import (
    ClipEncoder,
    DecodeFailure,
    ImageDecodeError,
    decode_image,
    read_image,
)


def encoded(image: Image.Image, fmt: str = "PNG", **params: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **params)
    return buffer.getvalue()


def quadrants() -> Image.Image:
    """A 64x32 image whose corners differ, so any rotation or flip is visible."""
    array = np.zeros((32, 64, 3), dtype=np.uint8)
    array[:16, :32] = (255, 0, 0)
    array[:16, 32:] = (0, 255, 0)
    array[16:, :32] = (0, 0, 255)
    array[16:, 32:] = (255, 255, 0)
    return Image.fromarray(array)


def test_zero_bytes() -> None:
    with pytest.raises(ImageDecodeError) as info:
        decode_image(b"", "empty.jpg")
    assert info.value.reason is DecodeFailure.EMPTY
    assert "empty.jpg" in str(info.value)


def test_text_file_is_not_an_image(tmp_path: Path) -> None:
    path = tmp_path / "notes.jpg"
    path.write_text("this is a text file with a .jpg name\n")
    with pytest.raises(ImageDecodeError) as info:
        read_image(path)
    assert info.value.reason is DecodeFailure.NOT_AN_IMAGE
    assert str(path) in str(info.value)


@pytest.mark.parametrize("size", [(600, 400), (64, 64)])  # cut in the pixels / in the header
def test_truncated_jpeg(photos: dict[str, Image.Image], size: tuple[int, int]) -> None:
    data = encoded(photos["coffee"].resize(size), "JPEG", quality=90)
    with pytest.raises(ImageDecodeError) as info:
        decode_image(data[: len(data) // 3], "coffee-cut.jpg")
    assert info.value.reason is DecodeFailure.TRUNCATED
    assert "coffee-cut.jpg" in str(info.value)


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
def test_decompression_bomb_over_pillows_limit() -> None:
    bomb = encoded(Image.new("1", (10_000, 10_000)))  # 100 Mpx, a few KB on disk
    assert len(bomb) < 100_000
    with pytest.raises(ImageDecodeError) as info:
        decode_image(bomb, "bomb.png")
    assert info.value.reason is DecodeFailure.TOO_LARGE
    assert "10000x10000" in str(info.value)


def test_pixel_limit_is_configurable(photos: dict[str, Image.Image]) -> None:
    data = encoded(photos["rocket"])
    with pytest.raises(ImageDecodeError, match="over the limit of 1,000 pixels"):
        decode_image(data, "rocket.png", max_pixels=1_000)


def test_unreadable_file(tmp_path: Path) -> None:
    with pytest.raises(ImageDecodeError) as info:
        read_image(tmp_path / "missing.png")
    assert info.value.reason is DecodeFailure.UNREADABLE


@pytest.mark.parametrize("seed", range(20))
def test_random_bytes_never_escape_as_untyped_errors(seed: int) -> None:
    rng = np.random.default_rng(seed)
    header = encoded(quadrants())[:32] if seed % 2 else b""
    junk = header + rng.integers(0, 256, int(rng.integers(1, 4096)), dtype=np.uint8).tobytes()
    try:
        image = decode_image(junk, "junk")
    except ImageDecodeError as err:
        assert err.source == "junk" and isinstance(err.reason, DecodeFailure)
    else:
        assert image.mode == "RGB"


def test_exif_orientation_is_applied() -> None:
    upright = quadrants()
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display": stored image is the upright one turned CCW
    stored = upright.transpose(Image.Transpose.ROTATE_90)
    decoded = decode_image(encoded(stored, exif=exif.tobytes()), "rotated.png")
    assert decoded.size == upright.size
    assert np.array_equal(np.asarray(decoded), np.asarray(upright))


def test_exif_rotated_photo_embeds_like_the_upright_one(
    tiny_encoder: ClipEncoder, photos: dict[str, Image.Image]
) -> None:
    upright = photos["astronaut"]
    exif = Image.Exif()
    exif[0x0112] = 8  # rotate 270 CW to display
    stored = upright.transpose(Image.Transpose.ROTATE_270)
    rotated = tiny_encoder.encode_images([encoded(stored, exif=exif.tobytes())])
    plain = tiny_encoder.encode_images([encoded(upright)])
    np.testing.assert_allclose(rotated, plain, atol=1e-5)


def test_rgba_transparency_becomes_white() -> None:
    image = Image.new("RGBA", (4, 4), (10, 20, 30, 0))
    image.putpixel((0, 0), (200, 0, 0, 255))
    rgb = np.asarray(decode_image(encoded(image)))
    assert tuple(rgb[0, 0]) == (200, 0, 0)
    assert tuple(rgb[3, 3]) == (255, 255, 255)


def test_palette_with_transparency_becomes_white() -> None:
    image = Image.new("P", (4, 4), 1)
    image.putpalette([0, 0, 0, 0, 128, 0] + [0] * 762)
    image.putpixel((0, 0), 0)
    rgb = np.asarray(decode_image(encoded(image, transparency=1)))
    assert tuple(rgb[0, 0]) == (0, 0, 0)
    assert tuple(rgb[1, 1]) == (255, 255, 255)


def test_sixteen_bit_greyscale_is_rescaled_not_clipped() -> None:
    levels = np.array([[0, 32768, 65535, 1000]], dtype=np.uint16)
    image = Image.fromarray(levels)
    assert image.mode.startswith("I;16")
    rgb = np.asarray(decode_image(encoded(image)))
    assert rgb[0, :, 0].tolist() == [0, 128, 255, 3]
    assert (rgb[..., 0] == rgb[..., 2]).all()


def test_float_image_in_unit_range_is_scaled() -> None:
    image = Image.fromarray(np.array([[0.0, 0.5, 1.0]], dtype=np.float32), mode="F")
    rgb = np.asarray(decode_image(encoded(image, "TIFF")))
    assert rgb[0, :, 1].tolist() == [0, 127, 255]


@pytest.mark.parametrize(
    ("mode", "fmt"), [("L", "PNG"), ("LA", "PNG"), ("1", "PNG"), ("CMYK", "JPEG"), ("P", "GIF")]
)
def test_other_modes_decode_to_rgb(mode: str, fmt: str) -> None:
    image = quadrants().convert(mode)
    decoded = decode_image(encoded(image, fmt))
    assert decoded.mode == "RGB"
    assert decoded.size == (64, 32)


def test_cmyk_jpeg_colours_survive() -> None:
    red = Image.new("RGB", (16, 16), (255, 0, 0)).convert("CMYK")
    rgb = np.asarray(decode_image(encoded(red, "JPEG", quality=95))).astype(int)
    assert rgb[8, 8, 0] > 200 and rgb[8, 8, 1] < 60 and rgb[8, 8, 2] < 60
