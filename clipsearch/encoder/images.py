"""Decoding untrusted image bytes into RGB images, with typed errors that name the input."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from io import BytesIO
from pathlib import Path

import numpy as np
from PIL import ExifTags, Image, ImageOps, UnidentifiedImageError

from clipsearch.errors import ClipsearchError

# Pillow's own decompression-bomb threshold: ~89 megapixels.
DEFAULT_MAX_PIXELS = Image.MAX_IMAGE_PIXELS or 89_478_485
_WHITE = (255, 255, 255)
# EXIF orientations that turn the picture a quarter: its upright width is the stored height.
_QUARTER_TURNS = {5, 6, 7, 8}
_SCALABLE = {"JPEG", "MPO"}  # MPO: the JPEG variant many phone cameras write


class DecodeFailure(StrEnum):
    """Why an input could not be used; these values appear in error tables and RPC messages."""

    EMPTY = "empty"
    NOT_AN_IMAGE = "not_an_image"
    TRUNCATED = "truncated"
    TOO_LARGE = "too_large"
    UNREADABLE = "unreadable"


class ImageDecodeError(ClipsearchError, ValueError):
    """An input that is not a usable image; `source` names it and `reason` says why."""

    def __init__(self, source: str, reason: DecodeFailure, detail: str) -> None:
        super().__init__(f"{source}: {reason.value.replace('_', ' ')}: {detail}")
        self.source = source
        self.reason = reason
        self.detail = detail


def read_image(path: Path, max_pixels: int = DEFAULT_MAX_PIXELS) -> Image.Image:
    """Read and decode an image file."""
    try:
        data = path.read_bytes()
    except OSError as err:
        raise ImageDecodeError(str(path), DecodeFailure.UNREADABLE, str(err)) from err
    return decode_image(data, str(path), max_pixels)


@dataclass(frozen=True)
class DecodedImage:
    """An upright RGB image, maybe decoded at a reduced scale, and the full picture's size."""

    image: Image.Image
    width: int  # of the full picture, upright
    height: int


def decode_image(
    data: bytes, source: str = "<bytes>", max_pixels: int = DEFAULT_MAX_PIXELS
) -> Image.Image:
    """Decode encoded bytes into an upright RGB image, or raise ImageDecodeError."""
    return decode_for_model(data, 0, source, max_pixels).image


def decode_for_model(
    data: bytes, min_side: int, source: str = "<bytes>", max_pixels: int = DEFAULT_MAX_PIXELS
) -> DecodedImage:
    """Decode encoded bytes for a model whose input is `min_side` pixels on its shorter side.

    A JPEG at least twice that size is decoded at 1/2, 1/4 or 1/8 scale (libjpeg scales
    while decoding, through Pillow's `draft`), the smallest scale whose shorter side is
    still >= `min_side`: the model's resize then starts from fewer pixels and gives nearly
    the same input, for a fraction of the decoding time. Other formats decode in full;
    `min_side` 0 never reduces. The size returned is the full picture's, upright.
    """
    image = _open(data, source, max_pixels)
    width, height = image.size
    if image.format in _SCALABLE and min_side > 0:
        image.draft(None, (min_side, min_side))
    try:
        image.load()
        if image.getexif().get(ExifTags.Base.Orientation) in _QUARTER_TURNS:
            width, height = height, width
        return DecodedImage(to_rgb(ImageOps.exif_transpose(image)), width, height)
    except Exception as err:  # decoders fail in many ways on corrupt data
        raise ImageDecodeError(source, _classify(err), _describe(err)) from err


def _open(data: bytes, source: str, max_pixels: int) -> Image.Image:
    """The image's header parsed and its size checked; no pixels decoded yet."""
    if not data:
        raise ImageDecodeError(source, DecodeFailure.EMPTY, "zero bytes")
    try:
        image = Image.open(BytesIO(data))
    except UnidentifiedImageError as err:
        raise ImageDecodeError(
            source, DecodeFailure.NOT_AN_IMAGE, "not a format Pillow can read"
        ) from err
    except Image.DecompressionBombError as err:
        raise ImageDecodeError(source, DecodeFailure.TOO_LARGE, str(err)) from err
    except Exception as err:  # Pillow's parsers raise many types on hostile headers
        raise ImageDecodeError(source, _classify(err), _describe(err)) from err
    width, height = image.size
    if width * height > max_pixels:
        raise ImageDecodeError(
            source,
            DecodeFailure.TOO_LARGE,
            f"{width}x{height} pixels is over the limit of {max_pixels:,} pixels",
        )
    return image


def to_rgb(image: Image.Image) -> Image.Image:
    """Convert any Pillow mode to 8-bit RGB without losing what the picture shows.

    Transparency is composited onto white (the RGB under a transparent pixel is
    arbitrary), and high-bit-depth greyscale is rescaled, where a plain
    `convert("RGB")` would clip it to white.
    """
    mode = image.mode
    if mode == "RGB":
        return image
    if mode.startswith("I;16") or mode == "I":
        # Pillow holds 16-bit greyscale (PNG, TIFF) in these modes: keep the top 8 bits.
        levels = np.asarray(image).astype(np.int64)
        return _grey_to_rgb(np.clip(levels >> 8, 0, 255))
    if mode == "F":
        values = np.nan_to_num(np.asarray(image, dtype=np.float64))
        scale = 255.0 if values.size and values.max() <= 1.0 else 1.0
        return _grey_to_rgb(np.clip(values * scale, 0, 255))
    if mode in {"RGBA", "LA", "PA", "RGBa", "La"} or "transparency" in image.info:
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (*_WHITE, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


def _grey_to_rgb(levels: np.ndarray) -> Image.Image:
    return Image.fromarray(levels.astype(np.uint8), mode="L").convert("RGB")


def _classify(err: Exception) -> DecodeFailure:
    """Truncation shows up as an OSError while opening (small files) or loading (large)."""
    text = str(err).lower()
    cut = ("truncated", "broken data stream", "premature end")
    if isinstance(err, OSError) and any(marker in text for marker in cut):
        return DecodeFailure.TRUNCATED
    return DecodeFailure.UNREADABLE


def _describe(err: BaseException) -> str:
    text = str(err).splitlines()[0] if str(err) else ""
    return f"{type(err).__name__}: {text}" if text else type(err).__name__
