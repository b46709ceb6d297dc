"""encode_image and resize_exact: right format and size, same bytes every time, no metadata."""

from __future__ import annotations

import io
from typing import get_args

import pytest
from PIL import Image

from retouch.media.encode import (
    CONTENT_TYPES,
    FILE_EXTENSIONS,
    OutputFormat,
    encode_image,
    resize_exact,
)

FORMATS: tuple[OutputFormat, ...] = get_args(OutputFormat)
PILLOW_NAMES = {"png": "PNG", "jpeg": "JPEG", "webp": "WEBP"}


def sample(size: tuple[int, int] = (96, 64)) -> Image.Image:
    """Something with gradients and edges, so encoders have real work to do."""
    image = Image.linear_gradient("L").resize(size).convert("RGB")
    image.paste((255, 0, 0), (10, 10, 40, 30))
    return image


def test_tables_cover_every_format() -> None:
    assert set(FORMATS) == {"png", "jpeg", "webp"}
    assert CONTENT_TYPES == {"png": "image/png", "jpeg": "image/jpeg", "webp": "image/webp"}
    assert FILE_EXTENSIONS == {"png": "png", "jpeg": "jpg", "webp": "webp"}


@pytest.mark.parametrize("fmt", FORMATS)
def test_encodes_in_format_at_same_size(fmt: OutputFormat) -> None:
    data = encode_image(sample(), fmt)
    with Image.open(io.BytesIO(data)) as decoded:
        assert decoded.format == PILLOW_NAMES[fmt]
        assert decoded.size == (96, 64)
        assert decoded.mode == "RGB"


def test_png_is_lossless() -> None:
    image = sample()
    with Image.open(io.BytesIO(encode_image(image, "png"))) as decoded:
        assert decoded.tobytes() == image.tobytes()


@pytest.mark.parametrize("fmt", FORMATS)
def test_bytes_are_deterministic(fmt: OutputFormat) -> None:
    assert encode_image(sample(), fmt) == encode_image(sample(), fmt)


@pytest.mark.parametrize("fmt", FORMATS)
def test_no_metadata_carried_along(fmt: OutputFormat) -> None:
    image = sample()
    exif = Image.Exif()
    exif[0x0112] = 6
    image.info.update(icc_profile=b"fake profile", exif=exif.tobytes(), comment=b"secret")
    data = encode_image(image, fmt)
    assert data == encode_image(sample(), fmt)  # byte for byte what a clean image gives
    for marker in (b"fake profile", b"secret", b"Exif"):
        assert marker not in data


@pytest.mark.parametrize("fmt", FORMATS)
def test_alpha_flattened_before_encoding(fmt: OutputFormat) -> None:
    transparent = Image.new("RGBA", (8, 8), (0, 0, 0, 0))
    with Image.open(io.BytesIO(encode_image(transparent, fmt))) as decoded:
        assert decoded.mode == "RGB"
        assert decoded.getpixel((4, 4)) == (255, 255, 255)


@pytest.mark.parametrize("size", [(1024, 768), (17, 5), (300, 300), (64, 640)])
def test_resize_exact(size: tuple[int, int]) -> None:
    resized = resize_exact(sample((200, 100)), *size)
    assert resized.size == size
    assert resized.mode == "RGB"


def test_resize_exact_is_a_no_op_at_size() -> None:
    image = sample()
    assert resize_exact(image, 96, 64) is image
