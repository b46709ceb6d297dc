"""What is particular to Qwen-Image-Edit: up to 3 references, true CFG with a blank negative
prompt, and no run without a reference. The shared behaviour is in test_engine_suite.py."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from retouch.engine.base import EditRequest
from retouch.engine.qwen_image_edit import QwenImageEditEngine
from retouch.engine.registry import load_engine

from .conftest import CPU
from .helpers import noise_image


@pytest.fixture(scope="module")
def qwen(models_dir: Path) -> QwenImageEditEngine:
    engine = load_engine("qwen-image-edit", None, models_dir=models_dir, options=CPU)
    assert isinstance(engine, QwenImageEditEngine)
    return engine


def test_limits(qwen: QwenImageEditEngine) -> None:
    info = qwen.info
    assert (info.max_pixels, info.size_multiple, info.min_side) == (1024 * 1024, 16, 64)
    assert (info.max_references, info.reference_pixels) == (3, 1024 * 1024)
    assert info.default_steps == 4  # the preview's; the real model's default is 40
    assert QwenImageEditEngine.DEFAULT_STEPS == 40
    assert info.extra["license"] == "Apache-2.0"


def test_true_cfg_runs_the_transformer_twice_per_step(qwen: QwenImageEditEngine) -> None:
    """true_cfg_scale > 1 only guides when a negative prompt is given; the engine gives " "."""
    calls: list[Any] = []
    handle = qwen.pipeline.transformer.register_forward_hook(lambda *args: calls.append(1))
    try:
        qwen.edit(EditRequest("x", [noise_image(64, 64)], 256, 256, [0]))
    finally:
        handle.remove()
    assert len(calls) == 2 * qwen.info.default_steps
