"""The published output size table for nano-banana-2 and the `auto` aspect-ratio rule."""

from __future__ import annotations

import math
from typing import Final, Literal

AspectRatio = Literal[
    "auto", "21:9", "16:9", "3:2", "4:3", "5:4", "1:1", "4:5", "3:4", "2:3", "9:16"
]
Resolution = Literal["0.5K", "1K", "2K", "4K"]

# width, height per ratio and resolution, exactly as the contract's table publishes them.
SIZE_TABLE: Final[dict[str, dict[str, tuple[int, int]]]] = {
    "1:1": {"0.5K": (512, 512), "1K": (1024, 1024), "2K": (2048, 2048), "4K": (4096, 4096)},
    "2:3": {"0.5K": (424, 632), "1K": (848, 1264), "2K": (1696, 2528), "4K": (3392, 5056)},
    "3:2": {"0.5K": (632, 424), "1K": (1264, 848), "2K": (2528, 1696), "4K": (5056, 3392)},
    "3:4": {"0.5K": (448, 600), "1K": (896, 1200), "2K": (1792, 2400), "4K": (3584, 4800)},
    "4:3": {"0.5K": (600, 448), "1K": (1200, 896), "2K": (2400, 1792), "4K": (4800, 3584)},
    "4:5": {"0.5K": (464, 576), "1K": (928, 1152), "2K": (1856, 2304), "4K": (3712, 4608)},
    "5:4": {"0.5K": (576, 464), "1K": (1152, 928), "2K": (2304, 1856), "4K": (4608, 3712)},
    "9:16": {"0.5K": (384, 688), "1K": (768, 1376), "2K": (1536, 2752), "4K": (3072, 5504)},
    "16:9": {"0.5K": (688, 384), "1K": (1376, 768), "2K": (2752, 1536), "4K": (5504, 3072)},
    "21:9": {"0.5K": (792, 336), "1K": (1584, 672), "2K": (3168, 1344), "4K": (6336, 2688)},
}

FIXED_RATIOS: Final[tuple[str, ...]] = tuple(SIZE_TABLE)


def ratio_value(ratio: str) -> float:
    width, height = ratio.split(":")
    return int(width) / int(height)


def closest_ratio(width: int, height: int) -> str:
    """The table ratio closest to width:height, compared in log space so that 2:1 and 1:2
    are equally far from 1:1."""
    target = math.log(width / height)
    return min(FIXED_RATIOS, key=lambda ratio: abs(math.log(ratio_value(ratio)) - target))


def output_size(
    aspect_ratio: str, resolution: str, first_image_size: tuple[int, int] | None
) -> tuple[str, tuple[int, int]]:
    """The (ratio, (width, height)) of the file we return. `auto` needs the first input's size."""
    ratio = aspect_ratio
    if ratio == "auto":
        if first_image_size is None:
            raise ValueError("aspect_ratio auto needs the first input image's size")
        ratio = closest_ratio(*first_image_size)
    return ratio, SIZE_TABLE[ratio][resolution]
