"""Qwen-Image-Edit 2509/2511 through diffusers' QwenImageEditPlusPipeline: 1-3 references,
~1 MP, true classifier-free guidance. Importing this module does not import torch."""

from __future__ import annotations

from typing import Any

from PIL import Image

from retouch.engine.base import EditRequest
from retouch.engine.diffusers_engine import DiffusersEngine


class QwenImageEditEngine(DiffusersEngine):
    KIND = "qwen-image-edit"
    PIPELINE = "QwenImageEditPlusPipeline"
    DEFAULT_MODEL = "Qwen/Qwen-Image-Edit-2511"
    LICENSE = "Apache-2.0"
    PREVIEW_MODULE = "retouch.engine.preview_qwen_image_edit"
    MAX_PIXELS = 1024 * 1024
    """Qwen-Image-Edit is trained around 1 MP (the pipeline's own default output size)."""
    MAX_REFERENCES = 3
    """The 2509/2511 checkpoints are trained on 1-3 references."""
    REFERENCE_PIXELS = 1024 * 1024
    """The pipeline VAE-encodes every reference at ~1 MP (and shows it to its vision-language
    encoder at ~384²)."""
    DEFAULT_STEPS = 40
    PREVIEW_STEPS = 4
    TRUE_CFG_SCALE = 4.0
    NEGATIVE_PROMPT = " "
    """True CFG runs only with a negative prompt; the model card uses a single space."""
    NEEDS_REFERENCE = True
    """The pipeline sizes its inputs from the last reference; it cannot run without one."""
    REFERENCE_MAX_ASPECT = 8.0
    """The vision encoder's resize refuses aspects above 200:1, and a very long reference
    rounds its short side to zero at 384²: pad beyond 8:1, as for klein."""

    def call_arguments(self, request: EditRequest, references: list[Image.Image]) -> dict[str, Any]:
        return {
            "image": references,
            "height": request.height,
            "width": request.width,
            "negative_prompt": self.NEGATIVE_PROMPT,
            "true_cfg_scale": self.TRUE_CFG_SCALE,
        }
