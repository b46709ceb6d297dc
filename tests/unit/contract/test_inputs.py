"""The nano-banana-2/edit input model on its own (the API's 422s are tested in unit/api)."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from retouch.contract.inputs import INPUT_MODEL

GOOD = {"prompt": "make it blue", "image_urls": ["https://example.com/a.png"]}


def test_a_whole_number_written_with_a_fraction_is_that_integer() -> None:
    fields = INPUT_MODEL.model_validate_json(
        json.dumps({**GOOD, "num_images": 2.0, "seed": 7.0, "safety_tolerance": 4.0})
    )
    assert (fields.num_images, fields.seed, fields.safety_tolerance) == (2, 7, 4)
    assert all(type(value) is int for value in (fields.num_images, fields.seed))


@pytest.mark.parametrize(
    "change", [{"num_images": 1.5}, {"seed": 0.1}, {"safety_tolerance": 4.5}, {"num_images": 5.0}]
)
def test_a_real_fraction_or_an_out_of_range_whole_number_is_refused(
    change: dict[str, float],
) -> None:
    with pytest.raises(ValidationError):
        INPUT_MODEL.model_validate_json(json.dumps({**GOOD, **change}))


def test_the_schema_states_what_the_prompt_check_enforces() -> None:
    prompt = INPUT_MODEL.model_json_schema()["properties"]["prompt"]
    assert prompt["minLength"] == 1 and prompt["pattern"] == r"\S"
    with pytest.raises(ValidationError):
        INPUT_MODEL.model_validate_json(json.dumps({**GOOD, "prompt": " \t\n"}))
