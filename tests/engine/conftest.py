"""Session fixtures: the preview model is built once (offline) and one engine is shared."""

from __future__ import annotations

import os

# Before anything imports huggingface_hub: these tests must never reach the network.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"

from pathlib import Path

import pytest

from retouch.engine.flux2_klein import Flux2KleinEngine
from retouch.engine.preview import PREVIEW_DIRNAME, ensure_preview_model


@pytest.fixture(scope="session")
def preview_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return ensure_preview_model(tmp_path_factory.mktemp("engine-models") / PREVIEW_DIRNAME)


@pytest.fixture(scope="session")
def engine(preview_dir: Path) -> Flux2KleinEngine:
    return Flux2KleinEngine.load(str(preview_dir), device="cpu", preview=True)
