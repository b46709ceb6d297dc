"""decode_image: allowed formats only, pixel cap before decoding, upright opaque RGB out."""

from __future__ import annotations

import io
import struct
import time
import zlib
from typing import Any

import pytest
from PIL import Image

from retouch.media.decode import FORMATS, PixelBudget, decode_image
from retouch.media.errors import MediaError

CAP = 50_000_000
NOT_AN_IMAGE = "not an image (or not JPEG, PNG or WEBP)"
CORRUPT = "image is corrupt or truncated"


def save(image: Image.Image, fmt: str, **options: Any) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def quadrants(size: tuple[int, int] = (64, 48)) -> Image.Image:
    """Red left half, blue right half: orientation and flips are visible."""
    image = Image.new("RGB", size, (255, 0, 0))
    image.paste((0, 0, 255), (size[0] // 2, 0, size[0], size[1]))
    return image


def png_header(width: int, height: int) -> bytes:
    """A tiny PNG that claims width×height: decoding it for real would need gigabytes."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = zlib.crc32(kind + body)
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\0" * 64))
        + chunk(b"IEND", b"")
    )


def close(
    image: Image.Image, xy: tuple[int, int], expected: tuple[int, ...], tolerance: int = 12
) -> bool:
    """Whether the pixel at `xy` is within `tolerance` of `expected` (lossy formats drift)."""
    pixel = image.getpixel(xy)
    assert isinstance(pixel, tuple)
    return all(abs(x - y) <= tolerance for x, y in zip(pixel, expected, strict=True))


def test_heif_only_when_installed() -> None:
    assert FORMATS[:3] == ("JPEG", "PNG", "WEBP")


def test_png_round_trip_is_exact() -> None:
    original = quadrants()
    decoded = decode_image(save(original, "PNG"), max_pixels=CAP)
    assert decoded.mode == "RGB"
    assert decoded.tobytes() == original.tobytes()


@pytest.mark.parametrize("fmt", ["JPEG", "WEBP"])
def test_lossy_round_trip(fmt: str) -> None:
    decoded = decode_image(save(quadrants(), fmt, quality=95), max_pixels=CAP)
    assert (decoded.mode, decoded.size) == ("RGB", (64, 48))
    assert close(decoded, (5, 5), (255, 0, 0))
    assert close(decoded, (60, 40), (0, 0, 255))


@pytest.mark.parametrize("fmt", ["GIF", "BMP", "TIFF", "ICO", "PPM"])
def test_other_formats_refused(fmt: str) -> None:
    with pytest.raises(MediaError) as caught:
        decode_image(save(Image.new("RGB", (16, 16)), fmt), max_pixels=CAP)
    assert str(caught.value) == NOT_AN_IMAGE


@pytest.mark.parametrize(
    "data", [b"", b"hello", b"<svg xmlns='http://www.w3.org/2000/svg'/>", b"\x89PNG\r\n"]
)
def test_garbage_refused(data: bytes) -> None:
    with pytest.raises(MediaError) as caught:
        decode_image(data, max_pixels=CAP)
    assert str(caught.value) == NOT_AN_IMAGE


def test_request_budget_spans_the_inputs() -> None:
    # Each image is under the per-image cap; together they pass the request's budget.
    budget = PixelBudget(8000 * 7000)
    header = png_header(6000, 6000)  # 36 MP: refused from its header, nothing decoded
    small = save(Image.new("RGB", (4, 3)), "PNG")
    assert decode_image(small, max_pixels=CAP, budget=budget).size == (4, 3)
    with pytest.raises(MediaError) as caught:
        decode_image(header, max_pixels=CAP, budget=PixelBudget(30_000_000))
    assert str(caught.value) == (
        "image is 6000×6000 = 36 MP, which brings the request's inputs over their 30 MP limit "
        "in all: send fewer or smaller images"
    )
    budget.take((6000, 6000))
    with pytest.raises(MediaError, match="over their 56 MP limit in all"):
        decode_image(header, max_pixels=CAP, budget=budget)
    assert budget.spent == 12 + 36_000_000  # a refused image takes nothing


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "WEBP"])
def test_truncated_refused(fmt: str) -> None:
    # Noise does not compress, so cutting the file in half really cuts the pixel data.
    data = save(Image.effect_noise((128, 128), 64).convert("RGB"), fmt)
    with pytest.raises(MediaError) as caught:
        decode_image(data[: len(data) // 2], max_pixels=CAP)
    assert str(caught.value) == CORRUPT


def test_corrupt_pixel_data_refused() -> None:
    data = bytearray(save(Image.effect_noise((64, 64), 64).convert("RGB"), "PNG"))
    start = data.index(b"IDAT") + 6  # past the chunk type and the zlib header
    data[start : start + 20] = b"\xff" * 20  # Pillow skips IDAT CRCs, but zlib notices this
    with pytest.raises(MediaError, match=CORRUPT):
        decode_image(bytes(data), max_pixels=CAP)


@pytest.mark.parametrize(
    ("size", "expected"),
    [
        # Above Pillow's own limit (~179 MP), where it refuses inside Image.open.
        ((20000, 20000), "image is 20000×20000 = 400 MP, over the 50 MP limit: downscale it first"),
        # Between Pillow's warning (89 MP) and its error: only our cap stops it.
        ((10000, 10000), "image is 10000×10000 = 100 MP, over the 50 MP limit: downscale it first"),
        ((8000, 7000), "image is 8000×7000 = 56 MP, over the 50 MP limit: downscale it first"),
    ],
)
def test_pixel_cap_checked_before_decoding(size: tuple[int, int], expected: str) -> None:
    started = time.monotonic()
    with pytest.raises(MediaError) as caught:
        decode_image(png_header(*size), max_pixels=CAP)
    assert str(caught.value) == expected
    assert time.monotonic() - started < 0.5  # nothing was allocated or decoded


def test_pixel_cap_boundary() -> None:
    data = save(Image.new("RGB", (4, 3)), "PNG")
    assert decode_image(data, max_pixels=12).size == (4, 3)
    with pytest.raises(MediaError, match=r"4×3 = 1.2e-05 MP, over the 1.1e-05 MP limit"):
        decode_image(data, max_pixels=11)


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "WEBP"])
def test_exif_orientation_applied(fmt: str) -> None:
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90° clockwise to display"
    data = save(quadrants(), fmt, exif=exif.tobytes(), quality=95)
    decoded = decode_image(data, max_pixels=CAP)
    assert decoded.size == (48, 64)
    # Clockwise: the red left half ends up on top.
    assert close(decoded, (24, 5), (255, 0, 0))
    assert close(decoded, (24, 60), (0, 0, 255))
    assert decoded.info == {}  # no EXIF left to rotate it a second time


def _transparent(mode: str) -> Image.Image:
    """Pixel (0,0) fully transparent black, (1,0) opaque black, (2,0) half transparent black."""
    rgba = Image.new("RGBA", (3, 1), (0, 0, 0, 0))
    rgba.putpixel((1, 0), (0, 0, 0, 255))
    rgba.putpixel((2, 0), (0, 0, 0, 128))
    return rgba if mode == "RGBA" else rgba.convert(mode)


@pytest.mark.parametrize(("mode", "fmt"), [("RGBA", "PNG"), ("LA", "PNG"), ("RGBA", "WEBP")])
def test_alpha_flattened_onto_white(mode: str, fmt: str) -> None:
    data = save(_transparent(mode), fmt, lossless=True)
    decoded = decode_image(data, max_pixels=CAP)
    assert decoded.mode == "RGB"
    assert decoded.getpixel((0, 0)) == (255, 255, 255)
    assert decoded.getpixel((1, 0)) == (0, 0, 0)
    assert close(decoded, (2, 0), (127, 127, 127), 2)


def test_palette_transparency_flattened() -> None:
    palette = Image.new("P", (2, 1), 0)
    palette.putpalette([0, 0, 0, 255, 0, 0])
    palette.putpixel((1, 0), 1)
    decoded = decode_image(save(palette, "PNG", transparency=0), max_pixels=CAP)
    assert decoded.getpixel((0, 0)) == (255, 255, 255)  # transparent black: white, not black
    assert decoded.getpixel((1, 0)) == (255, 0, 0)


def test_rgb_colour_key_transparency_flattened() -> None:
    data = save(Image.new("RGB", (1, 1), (0, 0, 0)), "PNG", transparency=(0, 0, 0))
    assert decode_image(data, max_pixels=CAP).getpixel((0, 0)) == (255, 255, 255)


def test_sixteen_bit_grey_scaled_not_clipped() -> None:
    grey = Image.new("I;16", (2, 1))
    grey.putpixel((0, 0), 32768)
    grey.putpixel((1, 0), 65535)
    decoded = decode_image(save(grey, "PNG"), max_pixels=CAP)
    assert decoded.getpixel((0, 0)) == (128, 128, 128)
    assert decoded.getpixel((1, 0)) == (255, 255, 255)


@pytest.mark.parametrize(("mode", "colour"), [("CMYK", (0, 255, 255, 0)), ("L", 76)])
def test_other_modes_become_rgb(mode: str, colour: Any) -> None:
    decoded = decode_image(save(Image.new(mode, (8, 8), colour), "JPEG"), max_pixels=CAP)
    assert decoded.mode == "RGB"
    expected = (255, 0, 0) if mode == "CMYK" else (76, 76, 76)
    assert close(decoded, (4, 4), expected)


@pytest.mark.parametrize("fmt", ["PNG", "WEBP"])
def test_animation_gives_first_frame(fmt: str) -> None:
    red, blue = Image.new("RGB", (8, 8), (255, 0, 0)), Image.new("RGB", (8, 8), (0, 0, 255))
    data = save(red, fmt, save_all=True, append_images=[blue], lossless=True)
    assert getattr(Image.open(io.BytesIO(data)), "n_frames", 1) == 2
    decoded = decode_image(data, max_pixels=CAP)
    assert decoded.getpixel((4, 4)) == (255, 0, 0)


def test_metadata_dropped() -> None:
    data = save(quadrants(), "JPEG", comment=b"hello", icc_profile=b"not really a profile")
    assert decode_image(data, max_pixels=CAP).info == {}
