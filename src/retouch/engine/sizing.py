"""Size rules shared by the engines: output sizes a model supports and references a pipeline
accepts. Pure Python (no torch), so the API can apply them too."""

from __future__ import annotations

import math

from PIL import Image

PAD_COLOR = (255, 255, 255)
"""Fill for padding extreme-aspect references (diffusers' own reference collage uses white)."""


def fit_size(
    width: int, height: int, *, max_pixels: int, multiple: int, min_side: int
) -> tuple[int, int]:
    """The nearest size with the same aspect whose sides are multiples of `multiple`, at least
    `min_side`, and whose area is at most `max_pixels`.

    Sides are rounded to the nearest multiple; only when that is over the ceiling is the size
    scaled down, then the under-ceiling candidate closest in aspect (then largest) wins.
    """
    if width <= 0 or height <= 0:
        raise ValueError(f"size must be positive, got {width}x{height}")
    # Grow tiny sizes as a whole so clamping one side does not distort the aspect ratio.
    grow = max(1.0, min_side / min(width, height))
    w, h = width * grow, height * grow
    rounded = (_nearest(w, multiple, min_side), _nearest(h, multiple, min_side))
    if rounded[0] * rounded[1] <= max_pixels:
        return rounded

    shrink = math.sqrt(max_pixels / (w * h))
    w, h = w * shrink, h * shrink
    ratio = w / h
    candidates: set[tuple[int, int]] = set()
    # Fix one side at a multiple near its ideal length, then take the other side nearest to
    # the ratio, or the longest that still fits when the ratio's would not.
    for side_h in _around(h, multiple, min_side):
        for side_w in (_nearest(side_h * ratio, multiple, min_side), max_pixels // side_h):
            candidates.add((_floor(side_w, multiple, min_side), side_h))
            candidates.add((_nearest(side_w, multiple, min_side), side_h))
    for side_w in _around(w, multiple, min_side):
        for side_h in (_nearest(side_w / ratio, multiple, min_side), max_pixels // side_w):
            candidates.add((side_w, _floor(side_h, multiple, min_side)))
            candidates.add((side_w, _nearest(side_h, multiple, min_side)))
    fitting = [c for c in candidates if c[0] * c[1] <= max_pixels]
    if not fitting:
        raise ValueError(f"no size fits {max_pixels} pixels with sides >= {min_side}")
    return min(fitting, key=lambda c: (abs(math.log(c[0] / c[1] / ratio)), -c[0] * c[1]))


def fit_reference(image: Image.Image, *, min_side: int, max_aspect: float) -> Image.Image:
    """Make a reference acceptable to a pipeline (sides >= min_side, aspect <= max_aspect) with
    the least change: pad the short side of a too-long image (distorting it would change what
    the model sees), then upscale a too-small one. Images that already qualify are returned as
    they are (converted to RGB).
    """
    image = image if image.mode == "RGB" else image.convert("RGB")
    width, height = image.size
    if width <= 0 or height <= 0:
        raise ValueError("empty reference image")
    short_needed = math.ceil(max(width, height) / max_aspect)
    if min(width, height) < short_needed:
        canvas_size = (max(width, short_needed), max(height, short_needed))
        canvas = Image.new("RGB", canvas_size, PAD_COLOR)
        canvas.paste(image, ((canvas_size[0] - width) // 2, (canvas_size[1] - height) // 2))
        image = canvas
        width, height = image.size
    if min(width, height) < min_side:
        scale = min_side / min(width, height)
        # Clamp so rounding cannot push the aspect past the limit or the short side under it.
        longest = math.floor(min_side * max_aspect)
        size = (
            min(longest, max(min_side, round(width * scale))),
            min(longest, max(min_side, round(height * scale))),
        )
        image = image.resize(size, Image.Resampling.LANCZOS)
    return image


def _nearest(value: float, multiple: int, minimum: int) -> int:
    return max(minimum, math.floor(value / multiple + 0.5) * multiple)


def _floor(value: float, multiple: int, minimum: int) -> int:
    return max(minimum, math.floor(value / multiple) * multiple)


def _around(value: float, multiple: int, minimum: int) -> set[int]:
    """The multiples just below and above value (at least minimum)."""
    low = _floor(value, multiple, minimum)
    return {low, max(minimum, math.ceil(value / multiple) * multiple)}
