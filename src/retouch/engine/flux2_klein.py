"""FLUX.2 [klein] (4B and 9B) through diffusers' Flux2KleinPipeline: every input image is a
reference. Importing this module does not import torch."""

from __future__ import annotations

from typing import Any

from PIL import Image

from retouch.engine.base import EditRequest, EngineInfo
from retouch.engine.diffusers_engine import DiffusersEngine
from retouch.engine.options import EngineOptions

DEFAULT_TEXT_LAYERS = (9, 18, 27)
"""Hidden layers of Qwen3 that the real model stacks into its text embedding."""


class Flux2KleinEngine(DiffusersEngine):
    KIND = "flux2-klein"
    PIPELINE = "Flux2KleinPipeline"
    DEFAULT_MODEL = "black-forest-labs/FLUX.2-klein-4B"
    LICENSE = "Apache-2.0 (klein 4B); FLUX Non-Commercial License (klein 9B)"
    PREVIEW_MODULE = "retouch.engine.preview_flux2_klein"
    MAX_PIXELS = 4 * 1024 * 1024
    """klein generates up to ~4 MP natively; 2048x2048 fits exactly."""
    MAX_REFERENCES = 4
    """The pipeline takes any number, each ~1 MP reference adding ~4096 tokens; Black Forest
    Labs advise up to 4."""
    REFERENCE_PIXELS = 1024 * 1024
    """The pipeline shrinks each reference to at most ~1 MP."""
    DEFAULT_STEPS = 4
    """The distilled klein checkpoints are trained for 4 steps."""
    REFERENCE_MIN_SIDE = 64
    REFERENCE_MAX_ASPECT = 8.0
    """The pipeline rejects references with a side under 64 px or an aspect above 8:1."""

    def __init__(self, pipe: Any, info: EngineInfo, options: EngineOptions) -> None:
        super().__init__(pipe, info, options)
        self._text_layers = _text_layers(pipe)
        _trim_text_encoder(pipe.text_encoder, max(self._text_layers) + 1)

    def call_arguments(self, request: EditRequest, references: list[Image.Image]) -> dict[str, Any]:
        return {
            "image": references or None,
            "height": request.height,
            "width": request.width,
            "guidance_scale": 1.0,  # ignored by distilled models; 1.0 avoids the warning
            "text_encoder_out_layers": self._text_layers,
        }


def _text_layers(pipe: Any) -> tuple[int, ...]:
    """Which text-encoder hidden layers to stack: the real model's, or for a shallower encoder
    (the preview) as many evenly spaced layers as the transformer's text width expects."""
    depth: int = pipe.text_encoder.config.num_hidden_layers
    count = pipe.transformer.config.joint_attention_dim // pipe.text_encoder.config.hidden_size
    if count == len(DEFAULT_TEXT_LAYERS) and max(DEFAULT_TEXT_LAYERS) <= depth:
        return DEFAULT_TEXT_LAYERS
    if not 0 < count <= depth:
        raise ValueError(f"cannot pick {count} text layers from an encoder of depth {depth}")
    return tuple(depth * (i + 1) // count for i in range(count))


def _trim_text_encoder(text_encoder: Any, depth: int) -> None:
    """Drop the text encoder's decoder layers past `depth`: only the hidden states of the layers
    in call_arguments are read, and hidden state k (k < depth) does not depend on later layers,
    so the embeddings are unchanged. For klein that is 28 of Qwen3's 36 layers: 8 layers less to
    run per prompt and about 1.6 GB less memory for the 4B. A no-op when nothing is past it or
    the encoder is not laid out as expected."""
    config = text_encoder.config
    layers = getattr(getattr(text_encoder, "model", None), "layers", None)
    if layers is None or len(layers) != config.num_hidden_layers or len(layers) <= depth:
        return
    text_encoder.model.layers = layers[:depth]
    config.num_hidden_layers = depth
    layer_types = getattr(config, "layer_types", None)
    if layer_types is not None:
        config.layer_types = list(layer_types)[:depth]
