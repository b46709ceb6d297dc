"""Replicate's input names for the model, to and from the contract's fields
(retouch.api.replicate.inputs): `image_input`, `google_search` (and `image_search`),
`match_input_image`, `jpg`; the contract's own names refused, pointing to Replicate's; the
ratios no engine makes refused by name; a 422 naming Replicate's fields."""

from __future__ import annotations

from typing import Any

import pytest

from retouch.api.errors import ApiError
from retouch.api.operations import UNMADE_RATIOS
from retouch.api.replicate.inputs import contract_fields, replicate_input

from ...inprocess import SQUARE_PNG

IMAGE = f"data:image/png;base64,{SQUARE_PNG}"
BASE: dict[str, Any] = {"prompt": "make it blue", "image_input": [IMAGE]}


def problems_of(raw_input: Any) -> dict[tuple[Any, ...], dict[str, Any]]:
    with pytest.raises(ApiError) as raised:
        contract_fields(raw_input)
    assert raised.value.status == 422
    return {tuple(p["loc"]): p for p in raised.value.problems}


def test_replicates_names_are_the_contracts_fields() -> None:
    fields = contract_fields(
        {**BASE, "google_search": True, "aspect_ratio": "match_input_image", "output_format": "jpg"}
    )
    assert fields["image_urls"] == [IMAGE] and fields["enable_web_search"] is True
    assert fields["aspect_ratio"] == "auto" and fields["output_format"] == "jpeg"
    assert "image_input" not in fields and "google_search" not in fields


def test_the_defaults_are_the_contracts() -> None:
    fields = contract_fields(BASE)
    assert fields["enable_web_search"] is False and fields["aspect_ratio"] == "auto"
    assert fields["output_format"] == "png" and fields["num_images"] == 1
    assert fields["seed"] == 0 and fields["safety_tolerance"] == 4


@pytest.mark.parametrize(
    ("field", "value"),
    [("aspect_ratio", "auto"), ("output_format", "jpeg"), ("aspect_ratio", "16:9")],
)
def test_the_contracts_own_values_are_taken_too(field: str, value: str) -> None:
    assert contract_fields({**BASE, field: value})[field] == value


@pytest.mark.parametrize("google_search", [None, False, True])
def test_image_search_asks_for_web_search(google_search: bool | None) -> None:
    given = {} if google_search is None else {"google_search": google_search}
    assert contract_fields({**BASE, **given, "image_search": True})["enable_web_search"] is True
    assert contract_fields({**BASE, **given, "image_search": False})["enable_web_search"] is bool(
        google_search
    )


@pytest.mark.parametrize("value", ["yes", 1, None])
def test_image_search_must_be_a_boolean(value: Any) -> None:
    problems = problems_of({**BASE, "image_search": value})
    assert list(problems) == [("image_search",)]
    assert problems["image_search",]["msg"] == "must be true or false"


@pytest.mark.parametrize(
    ("contract", "replicate"),
    [("image_urls", "image_input"), ("enable_web_search", "google_search")],
)
def test_a_contract_name_is_refused_pointing_to_replicates(contract: str, replicate: str) -> None:
    value: Any = [IMAGE] if contract == "image_urls" else True
    problems = problems_of({**BASE, contract: value})
    assert list(problems) == [(contract,)]
    assert problems[contract,]["msg"] == f"unknown field: Replicate's name is {replicate}"


def test_the_contract_name_alone_leaves_replicates_missing() -> None:
    problems = problems_of({"prompt": "x", "image_urls": [IMAGE]})
    assert set(problems) == {("image_urls",), ("image_input",)}
    assert problems["image_input",]["type"] == "missing"


@pytest.mark.parametrize("ratio", UNMADE_RATIOS)
def test_the_ratios_no_engine_makes_are_refused_by_name(ratio: str) -> None:
    problems = problems_of({**BASE, "aspect_ratio": ratio})
    assert list(problems) == [("aspect_ratio",)]
    message = problems["aspect_ratio",]["msg"]
    assert message.startswith(f"{ratio} is one of the model's ratios")
    assert "use match_input_image or one of 1:1," in message


def test_every_bad_field_is_named_by_replicates_names() -> None:
    problems = problems_of(
        {
            "prompt": "",
            "image_input": [IMAGE, "ftp://example.com/a.png"],
            "aspect_ratio": "8:1",
            "google_search": "yes",
            "output_format": "gif",
            "colour": "blue",
        }
    )
    assert set(problems) == {
        ("prompt",),
        ("image_input", 1),
        ("aspect_ratio",),
        ("google_search",),
        ("output_format",),
        ("colour",),
    }
    assert problems["colour",]["type"] == "extra_forbidden"


@pytest.mark.parametrize("raw_input", [[1], "prompt", None, 3])
def test_an_input_that_is_no_object_is_one_problem(raw_input: Any) -> None:
    problems = problems_of(raw_input)
    assert [p["type"] for p in problems.values()] == ["model_type"]


def test_stored_fields_are_shown_in_replicates_names_and_values() -> None:
    fields = contract_fields(BASE)
    shown = replicate_input(fields)
    assert shown["image_input"] == [IMAGE] and shown["google_search"] is False
    assert shown["aspect_ratio"] == "match_input_image" and shown["output_format"] == "png"
    assert "image_urls" not in shown and "enable_web_search" not in shown
    assert replicate_input({**fields, "output_format": "jpeg"})["output_format"] == "jpg"
    # What a prediction shows is what creates it again.
    assert contract_fields(shown) == fields
    assert (
        contract_fields(replicate_input({**fields, "aspect_ratio": "3:2"}))["aspect_ratio"] == "3:2"
    )
