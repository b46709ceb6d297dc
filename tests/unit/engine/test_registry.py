"""The registry: engine kinds by name, their class-level facts without torch, and loading; and
the worker's original loader, kept working on top of it."""

from __future__ import annotations

from pathlib import Path

import pytest

from retouch.engine.flux2_klein import Flux2KleinEngine
from retouch.engine.registry import (
    ENGINE_KINDS,
    UnknownEngineKind,
    describe_kind,
    load_engine,
    preview_dirname,
)

from .conftest import CPU


def test_the_kinds() -> None:
    assert list(ENGINE_KINDS) == ["flux2-klein", "flux1-kontext", "qwen-image-edit"]
    for kind, engine_class in ENGINE_KINDS.items():
        assert kind == engine_class.KIND


def test_describe_kind() -> None:
    assert describe_kind("flux2-klein") == {
        "engine": "flux2-klein",
        "pipeline": "Flux2KleinPipeline",
        "default_model": "black-forest-labs/FLUX.2-klein-4B",
        "license": "Apache-2.0 (klein 4B); FLUX Non-Commercial License (klein 9B)",
        "max_pixels": 4 * 1024 * 1024,
        "size_multiple": 16,
        "min_side": 64,
        "max_references": 4,
        "reference_pixels": 1024 * 1024,
        "default_steps": 4,
    }
    kontext = describe_kind("flux1-kontext")
    assert (kontext["max_references"], kontext["max_pixels"], kontext["default_steps"]) == (
        1,
        1024 * 1024,
        28,
    )
    qwen = describe_kind("qwen-image-edit")
    assert (qwen["max_references"], qwen["license"], qwen["default_steps"]) == (3, "Apache-2.0", 40)


def test_unknown_kinds_are_refused_with_the_known_ones() -> None:
    with pytest.raises(UnknownEngineKind, match="flux2-klein, flux1-kontext, qwen-image-edit"):
        describe_kind("sdxl")
    with pytest.raises(ValueError, match="unknown engine kind 'sdxl'"):
        load_engine("sdxl", None, models_dir=Path("/nonexistent"), options=CPU)
    assert "sdxl" not in ENGINE_KINDS


def test_no_model_loads_the_cached_preview(tmp_path: Path) -> None:
    engine = load_engine("flux2-klein", None, models_dir=tmp_path, options=CPU)
    assert isinstance(engine, Flux2KleinEngine)
    assert engine.info.preview and engine.info.model == "preview"
    index = tmp_path / preview_dirname("flux2-klein") / "model_index.json"
    mtime = index.stat().st_mtime_ns
    load_engine("flux2-klein", None, models_dir=tmp_path, options=CPU)
    assert index.stat().st_mtime_ns == mtime


def test_a_model_folder_loads_as_a_real_engine(preview_dir: Path) -> None:
    engine = load_engine("flux2-klein", str(preview_dir), models_dir=Path("/x"), options=CPU)
    assert not engine.info.preview and engine.info.model == str(preview_dir)
