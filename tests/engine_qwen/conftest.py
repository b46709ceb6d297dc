"""Fixtures for the Qwen-Image-Edit preview tests: the pipeline is built once (offline)."""

from __future__ import annotations

import os

# Before anything imports huggingface_hub: these tests must never reach the network.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"

from pathlib import Path
from typing import Any

import pytest

from retouch.engine.preview_qwen_image_edit import build_preview_pipeline


@pytest.fixture(scope="module")
def pipe() -> Any:
    pipeline = build_preview_pipeline()
    pipeline.set_progress_bar_config(disable=True)
    return pipeline


@pytest.fixture(scope="module")
def saved(pipe: Any, tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("qwen-preview") / "preview-qwen-image-edit"
    pipe.save_pretrained(folder)
    return folder
