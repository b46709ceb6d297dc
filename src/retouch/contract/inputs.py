"""The contract every served endpoint speaks: its input model and schema."""

from __future__ import annotations

from typing import Any

from retouch.contract.nano_banana_edit import NanoBananaEditInput

DEFAULT_ENDPOINT = "google/nano-banana-2/edit"

# Every endpoint speaks the nano-banana-2/edit contract, whatever engine serves it, so a
# client written for the hosted API can switch endpoints without changing its requests.
INPUT_MODEL = NanoBananaEditInput


def input_schema() -> dict[str, Any]:
    return INPUT_MODEL.model_json_schema()
