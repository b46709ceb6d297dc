"""The size rules shared by the engines: output sizes and reference fitting."""

from __future__ import annotations

import pytest
from PIL import Image

from retouch.engine.sizing import fit_reference, fit_size

FOUR_MP = 4 * 1024 * 1024


@pytest.mark.parametrize(
    ("size", "fitted"),
    [
        ((40, 40), (64, 64)),
        ((1000, 100), (1000, 125)),  # padded to 8:1
        ((5, 700), (88, 700)),  # padded to 8:1, which also makes the short side long enough
        ((30, 200), (64, 427)),  # grown to a 64 px short side
        ((20, 400), (64, 512)),  # padded to 50x400, then grown; still 8:1 at most
        ((64, 512), (64, 512)),  # already acceptable: untouched
        ((3000, 2000), (3000, 2000)),  # pipelines shrink large ones themselves
    ],
)
def test_fit_reference_changes_the_minimum(size: tuple[int, int], fitted: tuple[int, int]) -> None:
    image = Image.new("RGB", size)
    result = fit_reference(image, min_side=64, max_aspect=8)
    assert result.size == fitted
    if size == fitted:
        assert result is image
    width, height = result.size
    assert min(width, height) >= 64 and max(width, height) <= 8 * min(width, height)


def test_fit_reference_pads_to_a_fractional_aspect_and_centres() -> None:
    image = Image.new("RGB", (1000, 100), (255, 0, 0))
    result = fit_reference(image, min_side=64, max_aspect=1568 / 672)
    assert result.size == (1000, 429)
    assert result.getpixel((500, 10)) == (255, 255, 255)  # white padding above
    assert result.getpixel((500, 214)) == (255, 0, 0)  # the picture in the middle


def test_fit_reference_converts_to_rgb() -> None:
    assert fit_reference(Image.new("RGBA", (100, 100)), min_side=64, max_aspect=8).mode == "RGB"
    with pytest.raises(ValueError):
        fit_reference(Image.new("RGB", (0, 0)), min_side=64, max_aspect=8)


def test_fit_size_keeps_the_ratio_under_the_ceiling() -> None:
    for width, height in [(2528, 1696), (5000, 5000), (3840, 2160), (2160, 3840), (8000, 1000)]:
        fitted_w, fitted_h = fit_size(width, height, max_pixels=FOUR_MP, multiple=16, min_side=64)
        assert fitted_w * fitted_h <= FOUR_MP
        assert fitted_w * fitted_h > 0.97 * FOUR_MP
        assert abs(fitted_w / fitted_h / (width / height) - 1) < 0.02


def test_fit_size_rejects_empty_sizes() -> None:
    with pytest.raises(ValueError):
        fit_size(0, 100, max_pixels=FOUR_MP, multiple=16, min_side=64)
