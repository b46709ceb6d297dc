"""FLUX.1 Kontext [dev] through diffusers' FluxKontextPipeline: one reference image, ~1 MP.
Importing this module does not import torch."""

from __future__ import annotations

from typing import Any

from PIL import Image

from retouch.engine.base import EditRequest
from retouch.engine.diffusers_engine import DiffusersEngine

KONTEXT_MAX_ASPECT = 1568 / 672
"""The widest of the pipeline's preferred Kontext resolutions (1568x672, and 672x1568)."""


class FluxKontextEngine(DiffusersEngine):
    KIND = "flux1-kontext"
    PIPELINE = "FluxKontextPipeline"
    DEFAULT_MODEL = "black-forest-labs/FLUX.1-Kontext-dev"
    LICENSE = "FLUX.1 [dev] Non-Commercial License"
    PREVIEW_MODULE = "retouch.engine.preview_flux1_kontext"
    MAX_PIXELS = 1024 * 1024
    """Kontext is trained around 1 MP (its preferred resolutions are 0.98-1.05 MP)."""
    MAX_REFERENCES = 1
    """The pipeline conditions on the first image only."""
    REFERENCE_PIXELS = 1024 * 1024
    """The pipeline resizes the reference to the preferred resolution nearest its aspect."""
    DEFAULT_STEPS = 28
    PREVIEW_STEPS = 4
    GUIDANCE = 2.5
    """Distilled guidance; Black Forest Labs use 2.5 for Kontext [dev] (2.5-3.5 is usual)."""
    REFERENCE_MAX_ASPECT = KONTEXT_MAX_ASPECT
    """The pipeline stretches a reference to the preferred resolution nearest its aspect; pad
    longer ones to the widest preferred aspect first so nothing is squashed."""

    def call_arguments(self, request: EditRequest, references: list[Image.Image]) -> dict[str, Any]:
        width, height = request.width, request.height
        return {
            "image": references[0] if references else None,
            "height": height,
            "width": width,
            # The pipeline rescales (height, width) to max_area at the same aspect (default
            # 1 MP); with max_area = width*height it keeps our native size exactly.
            "max_area": width * height,
            "_auto_resize": True,  # the reference goes to a trained (preferred) resolution
            "guidance_scale": self.GUIDANCE,
        }
