"""Session fixtures: every engine kind's preview model is built once (offline) and one engine
of each kind is shared by the tests; the Qwen-Image-Edit preview pipeline is built once per
module that uses it."""

from __future__ import annotations

import os

# Before anything imports huggingface_hub: these tests must never reach the network.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"

from pathlib import Path
from typing import Any

import pytest
import torch

from retouch.engine.diffusers_engine import DiffusersEngine
from retouch.engine.flux2_klein import Flux2KleinEngine
from retouch.engine.options import EngineOptions
from retouch.engine.preview import PREVIEW_DIRNAME, ensure_preview_model
from retouch.engine.preview_qwen_image_edit import build_preview_pipeline
from retouch.engine.registry import ENGINE_KINDS, load_engine, preview_dirname

from .helpers import PREVIEW_KINDS

CPU = EngineOptions(device="cpu")

HERE = Path(__file__).parent
# Every fixture that builds or loads a preview pipeline depends on one of these.
PIPELINE_FIXTURES = {"models_dir", "pipe"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The tests that run a preview pipeline are `slow`: `make unit-fast` skips them, `make
    test` runs them."""
    for item in items:
        uses = set(getattr(item, "fixturenames", ()))
        if HERE in item.path.parents and uses & PIPELINE_FIXTURES:
            item.add_marker(pytest.mark.slow)


# The preview models' ops are tiny, so intra-op threads buy little, and on a shared CPU they
# cost a lot: a thread that waits for a descheduled sibling spins. Measured on the 2-core
# machine under load: one thread 1.1 s, two threads 2-7 s for the same edits.
torch.set_num_threads(1)


@pytest.fixture(scope="session")
def models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("engine-models")


@pytest.fixture(scope="session")
def preview_engines(models_dir: Path) -> dict[str, DiffusersEngine]:
    """Loaded lazily, one per kind, by the `any_engine` fixture."""
    return {}


@pytest.fixture(scope="session", params=PREVIEW_KINDS)
def any_engine(
    request: pytest.FixtureRequest, models_dir: Path, preview_engines: dict[str, DiffusersEngine]
) -> DiffusersEngine:
    """The preview engine of each kind in turn: the shared suite runs once per kind."""
    kind: str = request.param
    if kind not in preview_engines:
        engine = load_engine(kind, None, models_dir=models_dir, options=CPU)
        assert isinstance(engine, ENGINE_KINDS[kind])
        preview_engines[kind] = engine
    return preview_engines[kind]


@pytest.fixture(scope="session")
def preview_dir(models_dir: Path) -> Path:
    """The FLUX.2 [klein] preview model's folder (built by the registry's first load)."""
    folder = models_dir / preview_dirname("flux2-klein")
    assert folder.name == PREVIEW_DIRNAME
    return ensure_preview_model(folder)  # the default builder is klein's


@pytest.fixture(scope="session")
def engine(preview_dir: Path) -> Flux2KleinEngine:
    return Flux2KleinEngine.load(str(preview_dir), options=CPU, preview=True)


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
