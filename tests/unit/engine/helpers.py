"""Helpers for the engine tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from retouch.engine.registry import ENGINE_KINDS

PREVIEW_KINDS = list(ENGINE_KINDS)
"""The shared suite runs on every engine kind's preview model."""


def noise_image(width: int, height: int, seed: int = 0) -> Image.Image:
    """A random RGB picture: a reference whose pixels actually differ."""
    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    return Image.fromarray(pixels, "RGB")


def as_array(image: Image.Image) -> np.ndarray:
    """Pixels as a signed array, so differences do not wrap around."""
    return np.asarray(image, dtype=np.int16)


def load_pipeline(folder: Path, pipeline: str = "Flux2KleinPipeline") -> Any:
    """<pipeline>.from_pretrained(folder), typed Any (diffusers is untyped)."""
    import diffusers

    return getattr(diffusers, pipeline).from_pretrained(folder)
