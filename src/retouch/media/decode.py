"""Decode an untrusted image into plain RGB pixels, refusing anything too big to decode safely."""

from __future__ import annotations

import contextlib
import importlib
import io
import struct
import warnings
from typing import Final

from PIL import Image, ImageOps, UnidentifiedImageError

from retouch.media.errors import MediaError


def _supported_formats() -> tuple[str, ...]:
    # An explicit list keeps Pillow from trying every plugin it has: recent Pillow CVEs sit in
    # rarely used codecs (FITS, PSD, PDF). HEIF joins only where pillow_heif is installed.
    formats = ("JPEG", "PNG", "WEBP")
    try:
        heif = importlib.import_module("pillow_heif")
    except ImportError:
        return formats
    heif.register_heif_opener()
    return (*formats, "HEIF")


FORMATS: Final = _supported_formats()
_FORMAT_NAMES: Final = ", ".join(FORMATS[:-1]) + " or " + FORMATS[-1]
# What Pillow raises for broken data while decoding; anything else is our bug, not the input's.
_DECODE_ERRORS: Final = (OSError, SyntaxError, ValueError, EOFError, IndexError, struct.error)


class PixelBudget:
    """The pixels one request's inputs may decode to together: Pillow holds RGB in 4 bytes a
    pixel, so 20 inputs of 50 MP each would hold 3.7 GiB in the worker at once
    (bench/input_memory.py: the default 100 MP peaks at 1.2 GiB on the preview model)."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.spent = 0

    def take(self, size: tuple[int, int]) -> None:
        width, height = size
        if self.spent + width * height > self.total:
            raise MediaError(
                f"image is {width}×{height} = {_megapixels(width * height)} MP, which brings "
                f"the request's inputs over their {_megapixels(self.total)} MP limit in all: "
                "send fewer or smaller images"
            )
        self.spent += width * height


def decode_image(data: bytes, *, max_pixels: int, budget: PixelBudget | None = None) -> Image.Image:
    """The first frame of `data` as an upright RGB image, alpha flattened onto white; its
    pixels are taken from `budget` (before decoding) when one is given."""
    # catch_warnings is process-wide in Python 3.11, so concurrent decodes can briefly see each
    # other's filter; the only filter set here hides warnings, so the race is harmless.
    with warnings.catch_warnings():
        # Pillow warns about bombs above 89 MP and corrupt EXIF; our own cap below decides size,
        # and a warning is no reason to refuse an image.
        warnings.simplefilter("ignore")
        try:
            opened = Image.open(io.BytesIO(data), formats=FORMATS)
        except Image.DecompressionBombError:
            # Above ~179 MP Pillow refuses inside open(), before we can see the size.
            raise MediaError(_too_many_pixels(_declared_size(data), max_pixels)) from None
        except UnidentifiedImageError:
            raise MediaError(f"not an image (or not {_FORMAT_NAMES})") from None
        except _DECODE_ERRORS:
            raise MediaError("image is corrupt or truncated") from None
        with opened as image:
            # open() only read the header: refuse before load() allocates the pixels.
            width, height = image.size
            if width * height > max_pixels:
                raise MediaError(_too_many_pixels(image.size, max_pixels))
            if budget is not None:
                budget.take(image.size)
            try:
                image.load()  # loads the current frame only: the first, for animations
                ImageOps.exif_transpose(image, in_place=True)  # in place: no second copy
                rgb = to_rgb(image)
            except _DECODE_ERRORS:
                raise MediaError("image is corrupt or truncated") from None
    # Metadata (EXIF, ICC, text) is the input's, not ours; encoders must not carry it along.
    rgb.info = {}
    return rgb


def to_rgb(image: Image.Image) -> Image.Image:
    """`image` as RGB, with any transparency composited onto white (not just dropped, which
    would expose whatever colour sits under transparent pixels, often black)."""
    if image.mode.startswith("I"):
        # 16/32-bit greyscale: convert("L") clips everything above 255 to white; scale instead.
        image = image.convert("I").point(lambda value: value / 256).convert("L")
    has_alpha = image.mode in ("RGBA", "RGBa", "LA", "La", "PA") or "transparency" in image.info
    if has_alpha:
        rgba = image.convert("RGBA")  # P and L with a tRNS chunk become a real alpha channel
        white = Image.new("RGB", rgba.size, (255, 255, 255))
        white.paste(rgba, mask=rgba.getchannel("A"))
        return white
    if image.mode == "RGB":
        return image
    return image.convert("RGB")  # L, 1, P, CMYK, YCbCr


def _declared_size(data: bytes) -> tuple[int, int] | None:
    """The size a header claims, read with the format plugins directly (Image.open would run
    Pillow's bomb check again). Only for the message: None when it cannot be read."""
    for name in FORMATS:
        factory = Image.OPEN[name][0]
        with contextlib.suppress(Exception):
            return factory(io.BytesIO(data), "").size
    return None


def _too_many_pixels(size: tuple[int, int] | None, max_pixels: int) -> str:
    limit = f"over the {_megapixels(max_pixels)} MP limit: downscale it first"
    if size is None:
        return f"image is {limit}"
    width, height = size
    return f"image is {width}×{height} = {_megapixels(width * height)} MP, {limit}"


def _megapixels(pixels: int) -> str:
    megapixels = pixels / 1_000_000
    return f"{megapixels:.0f}" if megapixels >= 100 else f"{megapixels:.3g}"
