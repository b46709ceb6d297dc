"""load_engine: the preview model when no model is configured; cheap to import."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from retouch.engine.flux2_klein import Flux2KleinEngine
from retouch.engine.loader import load_engine


def test_no_model_loads_the_cached_preview(tmp_path: Path) -> None:
    engine = load_engine(None, data_dir=tmp_path, device="cpu")
    assert isinstance(engine, Flux2KleinEngine)
    assert engine.info.preview and engine.info.model == "preview"
    model_dir = tmp_path / "models" / "preview-flux2-klein"
    assert (model_dir / "model_index.json").is_file()
    mtime = (model_dir / "model_index.json").stat().st_mtime_ns
    load_engine(None, data_dir=tmp_path, device="cpu")
    assert (model_dir / "model_index.json").stat().st_mtime_ns == mtime


def test_a_model_folder_loads_as_a_real_engine(preview_dir: Path) -> None:
    engine = load_engine(str(preview_dir), data_dir=Path("/nonexistent"), device="cpu")
    assert not engine.info.preview and engine.info.model == str(preview_dir)


def test_importing_the_loader_does_not_import_torch() -> None:
    code = (
        "import sys, retouch.engine.loader, retouch.engine.flux2_klein, retouch.engine.preview;"
        "heavy = {'torch', 'diffusers', 'transformers'} & set(sys.modules);"
        "assert not heavy, heavy"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
