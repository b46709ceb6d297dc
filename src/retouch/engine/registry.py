"""The engine kinds Retouch can run, by name, and loading one. Cheap to import and torch-free:
an engine's module is imported only when its kind is looked up, and engine modules import
torch only when a model is loaded (describe_kind never loads one)."""

from __future__ import annotations

import importlib
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from retouch.engine.base import Engine
from retouch.engine.options import EngineOptions

if TYPE_CHECKING:
    from retouch.engine.diffusers_engine import DiffusersEngine

_ENGINE_PATHS: dict[str, str] = {
    "flux2-klein": "retouch.engine.flux2_klein:Flux2KleinEngine",
    "flux1-kontext": "retouch.engine.flux1_kontext:FluxKontextEngine",
    "qwen-image-edit": "retouch.engine.qwen_image_edit:QwenImageEditEngine",
}


class UnknownEngineKind(ValueError):
    """No engine of that name; the message lists the known ones."""

    def __init__(self, kind: str) -> None:
        super().__init__(f"unknown engine kind {kind!r}; known kinds: {', '.join(_ENGINE_PATHS)}")
        self.kind = kind


class _LazyEngineClasses(Mapping[str, "type[DiffusersEngine]"]):
    """kind -> engine class; a class's module is imported on first lookup."""

    def __getitem__(self, kind: str) -> type[DiffusersEngine]:
        try:
            module_name, class_name = _ENGINE_PATHS[kind].split(":")
        except KeyError:
            raise UnknownEngineKind(kind) from None
        engine_class: type[DiffusersEngine] = getattr(
            importlib.import_module(module_name), class_name
        )
        return engine_class

    def __contains__(self, kind: object) -> bool:
        return kind in _ENGINE_PATHS  # without importing the engine module

    def __iter__(self) -> Iterator[str]:
        return iter(_ENGINE_PATHS)

    def __len__(self) -> int:
        return len(_ENGINE_PATHS)


ENGINE_KINDS: Mapping[str, type[DiffusersEngine]] = _LazyEngineClasses()
"""Every engine kind by name. Iterating lists names without importing anything."""


def preview_dirname(kind: str) -> str:
    """Folder of a kind's preview model under the models folder."""
    return f"preview-{kind}"


def describe_kind(kind: str) -> dict[str, Any]:
    """What an engine kind is and can do (limits, licence, default model) without loading a
    model or importing torch; for GET /v1/models."""
    return ENGINE_KINDS[kind].describe()


def load_engine(
    kind: str, model: str | None, *, models_dir: Path, options: EngineOptions
) -> Engine:
    """Load an engine of `kind`. model: a local folder or Hugging Face id of its weights; None
    for the kind's preview model (tiny random weights, built offline on first use and cached at
    models_dir / preview-<kind>)."""
    engine_class = ENGINE_KINDS[kind]
    if model is None:
        return engine_class.load_preview(models_dir / preview_dirname(kind), options=options)
    return engine_class.load(model, options=options)
