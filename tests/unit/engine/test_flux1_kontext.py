"""What is particular to FLUX.1 Kontext: one reference, ~1 MP, and a pipeline that picks its
own output size unless told exactly. The shared behaviour is in test_engine_suite.py."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from retouch.contract.sizes import SIZE_TABLE
from retouch.engine.base import EditRequest
from retouch.engine.flux1_kontext import FluxKontextEngine
from retouch.engine.registry import load_engine

from .conftest import CPU
from .helpers import noise_image


class _Stop(Exception):
    """Raised by a spy to end a run once it has seen what it wanted."""


@pytest.fixture(scope="module")
def kontext(models_dir: Path) -> FluxKontextEngine:
    engine = load_engine("flux1-kontext", None, models_dir=models_dir, options=CPU)
    assert isinstance(engine, FluxKontextEngine)
    return engine


def test_limits(kontext: FluxKontextEngine) -> None:
    info = kontext.info
    assert (info.max_pixels, info.size_multiple, info.min_side) == (1024 * 1024, 16, 64)
    assert (info.max_references, info.reference_pixels) == (1, 1024 * 1024)
    assert info.default_steps == 4  # the preview's; the real model's default is 28
    assert FluxKontextEngine.DEFAULT_STEPS == 28
    assert info.extra["license"].startswith("FLUX.1 [dev] Non-Commercial")


def test_every_table_size_is_generated_at_exactly_its_native_size(
    kontext: FluxKontextEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The pipeline rescales (height, width) to `max_area` (default 1 MP); the engine's
    max_area must make that a no-op for every size a request can ask for. Checked where the
    pipeline allocates the latents, so no denoising runs."""
    pipe = kontext.pipeline
    seen: list[tuple[int, int]] = []

    def prepare_latents(
        image: Any, batch: int, channels: int, height: int, width: int, *a: Any
    ) -> Any:
        seen.append((width, height))
        raise _Stop

    monkeypatch.setattr(pipe, "prepare_latents", prepare_latents)
    natives = sorted(
        {kontext.native_size(w, h) for t in SIZE_TABLE.values() for w, h in t.values()}
    )
    for width, height in natives:
        with pytest.raises(_Stop):
            kontext.edit(EditRequest("x", [noise_image(64, 64)], width, height, [0]))
    assert seen == natives


def test_the_reference_is_padded_to_a_trained_aspect_not_squashed(
    kontext: FluxKontextEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    pipe = kontext.pipeline
    seen: list[Any] = []
    resize = pipe.image_processor.resize

    def spy(image: Any, height: int, width: int, *a: Any, **k: Any) -> Any:
        seen.append((image, width, height))
        return resize(image, height, width, *a, **k)

    monkeypatch.setattr(pipe.image_processor, "resize", spy)
    kontext.edit(EditRequest("x", [Image.new("RGB", (1000, 100))], 256, 256, [0]))
    image, width, height = seen[0]  # the pipeline's own resize (preprocess resizes again)
    assert isinstance(image, Image.Image)  # one image, not a list: Kontext takes one
    assert image.size == (1000, 429)  # padded to 1568:672, the widest trained aspect
    assert (width, height) == (1568, 672)  # which the pipeline picks for it
