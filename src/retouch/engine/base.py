"""The engine interface: pixels only. Prompt, decoded images, size and seeds in; images out.

This module must stay free of torch so the API process can import engine metadata.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from PIL import Image

StepCallback = Callable[[int, int], None]
"""Called after each denoising step with (steps_done, steps_total)."""

CancelCheck = Callable[[], bool]
"""Polled between denoising steps; returning True stops the run (EditCancelled is raised)."""


class EditCancelled(Exception):
    """The run was stopped between denoising steps because the cancel check said so."""


@dataclass(frozen=True)
class EngineInfo:
    """What an engine is and what it can do, shown to users in results and /v1/models."""

    engine: str
    """Engine family, e.g. "flux2-klein"."""
    model: str
    """Where the weights came from: a Hugging Face id, a local path, or "preview"."""
    preview: bool
    """True when the weights are tiny random ones: the output is noise, not a real edit."""
    max_pixels: int
    """Largest output the model generates natively (width * height)."""
    size_multiple: int
    """Both output sides are multiples of this."""
    min_side: int
    max_references: int = 1
    """How many reference images the model conditions on natively; more are combined first
    (see retouch.engine.references)."""
    reference_pixels: int = 1024 * 1024
    """Pixel budget per reference the model sees (larger ones are shrunk by the pipeline)."""
    default_steps: int = 4
    device: str = "cpu"
    dtype: str = "float32"
    extra: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class EditRequest:
    prompt: str
    images: list[Image.Image]
    """Decoded RGB references, in the order the user gave them. Every one conditions the model."""
    width: int
    height: int
    """Generation size; already a size the engine supports (see Engine.native_size)."""
    seeds: list[int]
    """One seed per output image; len(seeds) images are produced in one batched call."""


class Engine(Protocol):
    info: EngineInfo

    def native_size(self, width: int, height: int) -> tuple[int, int]:
        """The size the model generates for a wanted output size: the same aspect ratio,
        sides multiples of info.size_multiple, at most info.max_pixels."""
        ...

    def edit(
        self,
        request: EditRequest,
        on_step: StepCallback | None = None,
        should_cancel: CancelCheck | None = None,
    ) -> list[Image.Image]:
        """Run the model. Returns len(request.seeds) RGB images of exactly
        (request.width, request.height). Deterministic for the same request on one machine."""
        ...

    def edit_batch(
        self,
        requests: list[EditRequest],
        on_step: StepCallback | None = None,
        should_cancel: CancelCheck | None = None,
    ) -> list[list[Image.Image]]:
        """Run several requests, as one batched call where the engine can: each request's
        images, in order, as edit() would return them. on_step counts the steps of the whole
        batch; should_cancel stops all of it."""
        ...
