"""The worker's original entry point, kept working: FLUX.2 [klein] only. New code uses
retouch.engine.registry.load_engine, which knows every engine kind. Cheap to import."""

from __future__ import annotations

from pathlib import Path

from retouch.engine.base import Engine
from retouch.engine.options import EngineOptions
from retouch.engine.registry import load_engine as load_engine_of_kind


def load_engine(model: str | None, *, data_dir: Path, device: str | None = None) -> Engine:
    """model None: the tiny random-weight preview model (built offline on first use, then
    cached under data_dir/models); otherwise a FLUX.2 [klein] folder or Hugging Face id."""
    return load_engine_of_kind(
        "flux2-klein", model, models_dir=data_dir / "models", options=EngineOptions(device=device)
    )
