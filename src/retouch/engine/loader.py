"""Pick and load the engine for a configured model. Cheap to import: torch, diffusers and the
engine modules are imported only when an engine is actually loaded."""

from __future__ import annotations

from pathlib import Path

from retouch.engine.base import Engine


def load_engine(model: str | None, *, data_dir: Path, device: str | None = None) -> Engine:
    """model None: the tiny random-weight preview model (built offline on first use, then
    cached under data_dir); otherwise a FLUX.2 [klein] folder or Hugging Face id."""
    from retouch.engine.flux2_klein import Flux2KleinEngine

    if model is None:
        from retouch.engine.preview import PREVIEW_DIRNAME, ensure_preview_model

        folder = ensure_preview_model(data_dir / "models" / PREVIEW_DIRNAME)
        return Flux2KleinEngine.load(str(folder), device=device, preview=True)
    return Flux2KleinEngine.load(model, device=device)
