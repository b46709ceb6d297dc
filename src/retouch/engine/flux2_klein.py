"""FLUX.2 [klein] through diffusers' Flux2KleinPipeline: every input image is a reference.

torch and diffusers are imported inside the methods that need them, so importing this module
(e.g. for its size rules) stays cheap.
"""

from __future__ import annotations

import math
import threading
from typing import TYPE_CHECKING, Any

from PIL import Image

from retouch.engine.base import CancelCheck, EditCancelled, EditRequest, EngineInfo, StepCallback

if TYPE_CHECKING:
    import torch

ENGINE_NAME = "flux2-klein"
MAX_PIXELS = 4 * 1024 * 1024
"""klein generates up to ~4 MP natively; 2048x2048 fits exactly."""
SIZE_MULTIPLE = 16
"""VAE 8x times the transformer's 2x2 patches."""
MIN_SIDE = 64
MAX_REFERENCE_ASPECT = 8
"""The pipeline rejects references with a side under MIN_SIDE or an aspect above this."""
STEPS = 4
"""The distilled klein checkpoints are trained for 4 steps."""
DEFAULT_TEXT_LAYERS = (9, 18, 27)
"""Hidden layers of Qwen3-4B that the real model stacks into its text embedding."""

_SEED_MODULUS = 2**64
"""torch.Generator.manual_seed takes 0..2**64-1; any Python int maps into that range."""
_PAD_COLOR = (255, 255, 255)
"""Fill for padding extreme-aspect references (diffusers' own reference collage uses white)."""


class Flux2KleinEngine:
    """A resident Flux2KleinPipeline; one edit runs at a time (the pipeline holds run state)."""

    info: EngineInfo

    def __init__(self, pipe: Any, info: EngineInfo) -> None:
        self._pipe = pipe
        self.info = info
        self._text_layers = _text_layers(pipe)
        self._lock = threading.Lock()

    @classmethod
    def load(
        cls, source: str, *, device: str | None = None, preview: bool = False
    ) -> Flux2KleinEngine:
        """Load from a local folder or a Hugging Face id (from the local HF cache when offline).

        device None picks CUDA in bfloat16 when available, else the CPU in float32.
        """
        import torch
        from diffusers import Flux2KleinPipeline

        if device is None:
            device = "cuda" if torch.cuda.is_available() else "cpu"
        # bf16 is what klein is released in; CPU bf16 matmuls are slow or missing.
        dtype = torch.bfloat16 if torch.device(device).type == "cuda" else torch.float32
        pipe = Flux2KleinPipeline.from_pretrained(source, dtype=dtype)  # type: ignore[no-untyped-call]
        pipe.to(device)
        pipe.set_progress_bar_config(disable=True)
        info = EngineInfo(
            engine=ENGINE_NAME,
            model="preview" if preview else source,
            preview=preview,
            max_pixels=MAX_PIXELS,
            size_multiple=SIZE_MULTIPLE,
            min_side=MIN_SIDE,
            device=str(torch.device(device)),
            dtype=str(dtype).removeprefix("torch."),
            extra={"steps": str(STEPS)},
        )
        return cls(pipe, info)

    def native_size(self, width: int, height: int) -> tuple[int, int]:
        return fit_size(
            width,
            height,
            max_pixels=self.info.max_pixels,
            multiple=self.info.size_multiple,
            min_side=self.info.min_side,
        )

    def edit(
        self,
        request: EditRequest,
        on_step: StepCallback | None = None,
        should_cancel: CancelCheck | None = None,
    ) -> list[Image.Image]:
        import torch

        self._check_request(request)
        references = [fit_reference(image) for image in request.images]
        # CPU generators: diffusers draws the noise on the CPU and moves it, so a seed gives
        # the same starting noise on every device. One generator per output = per-image seeds.
        generators = [
            torch.Generator("cpu").manual_seed(seed % _SEED_MODULUS) for seed in request.seeds
        ]
        cancelled = False

        def on_step_end(
            pipe: Any, step: int, timestep: Any, tensors: dict[str, torch.Tensor]
        ) -> dict[str, torch.Tensor]:
            nonlocal cancelled
            if on_step is not None:
                on_step(step + 1, pipe.num_timesteps)
            if should_cancel is not None and should_cancel():
                # Skips the remaining steps; the pipeline still decodes, and we discard that.
                cancelled = True
                pipe._interrupt = True
            return {}

        with self._lock:
            if should_cancel is not None and should_cancel():
                raise EditCancelled()
            output = self._pipe(
                image=references or None,
                prompt=request.prompt,
                height=request.height,
                width=request.width,
                num_inference_steps=STEPS,
                guidance_scale=1.0,  # ignored by distilled models; 1.0 avoids the warning
                num_images_per_prompt=len(request.seeds),
                generator=generators,
                output_type="pil",
                callback_on_step_end=on_step_end,
                callback_on_step_end_tensor_inputs=[],
                text_encoder_out_layers=self._text_layers,
            )
        if cancelled:
            raise EditCancelled()
        images: list[Image.Image] = [image.convert("RGB") for image in output.images]
        wanted = (request.width, request.height)
        if len(images) != len(request.seeds) or any(image.size != wanted for image in images):
            raise RuntimeError(f"pipeline returned {[i.size for i in images]}, wanted {wanted}")
        return images

    def _check_request(self, request: EditRequest) -> None:
        """The pipeline silently floors odd sizes; refuse them so outputs are exactly the size."""
        if not request.seeds:
            raise ValueError("at least one seed is needed")
        width, height = request.width, request.height
        if (width, height) != self.native_size(width, height):
            raise ValueError(
                f"{width}x{height} is not a native size (multiples of {self.info.size_multiple},"
                f" sides >= {self.info.min_side}, at most {self.info.max_pixels} pixels)"
            )


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


def fit_reference(image: Image.Image) -> Image.Image:
    """Make a reference acceptable to the pipeline (sides >= MIN_SIDE, aspect <= 8:1) with the
    least change: pad the short side of a too-long image, then upscale a too-small one.
    Images that already qualify are returned as they are (converted to RGB).
    """
    image = image if image.mode == "RGB" else image.convert("RGB")
    width, height = image.size
    if width <= 0 or height <= 0:
        raise ValueError("empty reference image")
    short_needed = math.ceil(max(width, height) / MAX_REFERENCE_ASPECT)
    if min(width, height) < short_needed:
        canvas_size = (max(width, short_needed), max(height, short_needed))
        canvas = Image.new("RGB", canvas_size, _PAD_COLOR)
        canvas.paste(image, ((canvas_size[0] - width) // 2, (canvas_size[1] - height) // 2))
        image = canvas
        width, height = image.size
    if min(width, height) < MIN_SIDE:
        scale = MIN_SIDE / min(width, height)
        # Clamp so rounding cannot push the aspect past the limit or the short side under it.
        longest = MIN_SIDE * MAX_REFERENCE_ASPECT
        size = (
            min(longest, max(MIN_SIDE, round(width * scale))),
            min(longest, max(MIN_SIDE, round(height * scale))),
        )
        image = image.resize(size, Image.Resampling.LANCZOS)
    return image


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


def _nearest(value: float, multiple: int, minimum: int) -> int:
    return max(minimum, math.floor(value / multiple + 0.5) * multiple)


def _floor(value: float, multiple: int, minimum: int) -> int:
    return max(minimum, math.floor(value / multiple) * multiple)


def _around(value: float, multiple: int, minimum: int) -> set[int]:
    """The multiples just below and above value (at least minimum)."""
    low = _floor(value, multiple, minimum)
    return {low, max(minimum, math.ceil(value / multiple) * multiple)}
