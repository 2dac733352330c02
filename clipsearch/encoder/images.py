"""Decoding untrusted image bytes into RGB images, with typed errors that name the input."""

from __future__ import annotations

from enum import StrEnum
from io import BytesIO
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from clipsearch.errors import ClipsearchError

# Pillow's own decompression-bomb threshold: ~89 megapixels.
DEFAULT_MAX_PIXELS = Image.MAX_IMAGE_PIXELS or 89_478_485
_WHITE = (255, 255, 255)


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


def decode_image(
    data: bytes, source: str = "<bytes>", max_pixels: int = DEFAULT_MAX_PIXELS
) -> Image.Image:
    """Decode encoded bytes into an upright RGB image, or raise ImageDecodeError."""
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
    try:
        image.load()
        return to_rgb(ImageOps.exif_transpose(image))
    except Exception as err:  # as above: decoders fail in many ways on corrupt data
        raise ImageDecodeError(source, _classify(err), _describe(err)) from err


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
