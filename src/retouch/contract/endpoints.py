"""Which endpoint ids this server answers and the input model of each."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from retouch.contract.nano_banana_edit import NanoBananaEditInput

DEFAULT_ENDPOINT = "google/nano-banana-2/edit"

INPUT_MODELS: dict[str, type[BaseModel]] = {DEFAULT_ENDPOINT: NanoBananaEditInput}


def input_schema(endpoint: str) -> dict[str, Any]:
    return INPUT_MODELS[endpoint].model_json_schema()
