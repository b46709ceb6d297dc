"""fal's input forms translated to the contract's fields (retouch.api.fal.inputs): the
string safety tolerances, a null seed, sync_mode, fal's four ratios no engine makes, and
every bad field named in one 422 beside the contract's own problems."""

from __future__ import annotations

import json
from typing import Any

import pytest

from retouch.api.errors import ApiError
from retouch.api.fal.errors import fal_error, location
from retouch.api.fal.inputs import TOLERANCES, fal_fields
from retouch.api.operations import UNMADE_RATIOS

from ...inprocess import SQUARE_PNG

IMAGE = f"data:image/png;base64,{SQUARE_PNG}"
BASE: dict[str, Any] = {"prompt": "make it blue", "image_urls": [IMAGE]}


def fields_of(body: Any) -> tuple[dict[str, Any], bool]:
    return fal_fields(json.dumps(body).encode())


def problems_of(body: bytes) -> list[dict[str, Any]]:
    with pytest.raises(ApiError) as raised:
        fal_fields(body)
    assert raised.value.status == 422
    return raised.value.problems


def test_a_plain_body_is_the_contracts_fields_with_its_defaults() -> None:
    fields, sync_mode = fields_of(BASE)
    assert sync_mode is False
    assert fields["prompt"] == "make it blue" and fields["image_urls"] == [IMAGE]
    assert fields["seed"] == 0 and fields["safety_tolerance"] == 4
    assert fields["aspect_ratio"] == "auto" and fields["num_images"] == 1
    assert "sync_mode" not in fields


@pytest.mark.parametrize("tolerance", [*TOLERANCES, *(int(t) for t in TOLERANCES)])
def test_safety_tolerance_is_taken_as_a_string_or_an_integer(tolerance: str | int) -> None:
    fields, _ = fields_of({**BASE, "safety_tolerance": tolerance})
    assert fields["safety_tolerance"] == int(tolerance)


@pytest.mark.parametrize("tolerance", ["0", "7", "9", "", " 3", "3.0", "high"])
def test_other_safety_tolerance_strings_are_refused_naming_fals_values(tolerance: str) -> None:
    [problem] = problems_of(json.dumps({**BASE, "safety_tolerance": tolerance}).encode())
    assert problem["loc"] == ["safety_tolerance"]
    assert problem["msg"] == 'must be one of the strings "1" to "6"'


def test_a_null_seed_is_the_contracts_default_and_a_given_seed_is_kept() -> None:
    assert fields_of({**BASE, "seed": None})[0]["seed"] == 0
    assert fields_of({**BASE, "seed": 12345})[0]["seed"] == 12345


@pytest.mark.parametrize("sync_mode", [True, False])
def test_sync_mode_is_returned_beside_the_fields(sync_mode: bool) -> None:
    fields, returned = fields_of({**BASE, "sync_mode": sync_mode})
    assert returned is sync_mode and "sync_mode" not in fields


@pytest.mark.parametrize("sync_mode", ["yes", "true", 1, 0, None, []])
def test_sync_mode_must_be_a_boolean(sync_mode: Any) -> None:
    [problem] = problems_of(json.dumps({**BASE, "sync_mode": sync_mode}).encode())
    assert problem["loc"] == ["sync_mode"] and problem["msg"] == "must be true or false"


@pytest.mark.parametrize("ratio", UNMADE_RATIOS)
def test_fals_own_ratios_are_refused_by_name(ratio: str) -> None:
    [problem] = problems_of(json.dumps({**BASE, "aspect_ratio": ratio}).encode())
    assert problem["loc"] == ["aspect_ratio"]
    assert problem["msg"].startswith(f"{ratio} is one of the model's ratios that no engine")
    # fal's name for the contract's `auto` is the contract's own.
    assert "use auto or one of 1:1," in problem["msg"]


def test_every_bad_field_is_named_at_once() -> None:
    body = {
        "prompt": "",
        "image_urls": ["ftp://example.com/a.png"],
        "safety_tolerance": "9",
        "aspect_ratio": "4:1",
        "sync_mode": "yes",
        "colour": "blue",
    }
    problems = problems_of(json.dumps(body).encode())
    assert sorted(map(str, (p["loc"] for p in problems))) == sorted(
        map(
            str,
            [
                ["sync_mode"],
                ["safety_tolerance"],
                ["aspect_ratio"],
                ["prompt"],
                ["image_urls", 0],
                ["colour"],
            ],
        )
    )
    assert all(p["msg"] and p["type"] for p in problems)
    types = {tuple(p["loc"]): p["type"] for p in problems}
    assert types[("colour",)] == "extra_forbidden"


@pytest.mark.parametrize(
    ("body", "kind"),
    [(b"not json", "json_invalid"), (b"[1, 2]", "model_type"), (b'"prompt"', "model_type")],
)
def test_a_body_that_is_no_json_object_is_one_problem_at_the_body(body: bytes, kind: str) -> None:
    [problem] = problems_of(body)
    # Not JSON is located at the body; not an object at the root, which fal's form locates.
    assert location(problem["loc"]) == ["body"] and problem["type"] == kind


def test_fal_error_locates_body_fields_and_keeps_other_locations() -> None:
    assert location(["prompt"]) == ["body", "prompt"]
    assert location(["image_urls", 0]) == ["body", "image_urls", 0]
    assert location(["query", "logs"]) == ["query", "logs"]
    assert location(["body"]) == ["body"]
    assert location([]) == ["body"]
    with pytest.raises(ApiError) as raised:
        fal_fields(json.dumps({**BASE, "aspect_ratio": "8:1"}).encode())
    answer = fal_error(raised.value)
    assert answer.status_code == 422
    [detail] = json.loads(bytes(answer.body))["detail"]
    assert detail["loc"] == ["body", "aspect_ratio"] and detail["type"] == "value_error"


def test_fal_error_of_any_other_error_is_its_message() -> None:
    answer = fal_error(ApiError(404, 404001, "nothing here", headers={"X-Test": "1"}))
    assert answer.status_code == 404 and answer.headers["x-test"] == "1"
    assert json.loads(bytes(answer.body)) == {"detail": "nothing here"}
