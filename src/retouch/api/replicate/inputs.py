"""Replicate's input names for the model (`google/nano-banana-2`), to and from the contract's
fields.

Replicate's `image_input` is the contract's `image_urls`, `google_search` its
`enable_web_search` (`image_search` asks for the same grounding), `aspect_ratio`
`match_input_image` its `auto` and `output_format` `jpg` its `jpeg` (the contract's values
are taken too). The contract's other
fields (`num_images`, `seed`, `safety_tolerance`, `limit_generations`) are accepted by their
own names, as extensions. Replicate's four more aspect ratios are made by no engine here and
are refused by name."""

from __future__ import annotations

import json
from typing import Any, Final

from retouch.api.operations import parse_input, problem, unmade_ratio

# Replicate's name of a contract field, where it differs.
NAMES: Final = {"image_urls": "image_input", "enable_web_search": "google_search"}
# Replicate's value of a contract value, by field, where it differs.
VALUES: Final[dict[str, dict[Any, Any]]] = {
    "aspect_ratio": {"auto": "match_input_image"},
    "output_format": {"jpeg": "jpg"},
}


def contract_fields(raw_input: Any) -> dict[str, Any]:
    """The contract's validated fields of a prediction's `input`; a 422 names Replicate's
    fields. Blocking."""
    if not isinstance(raw_input, dict):
        return parse_input(json.dumps(raw_input).encode(), NAMES)  # the contract's 422
    fields = dict(raw_input)
    problems: list[dict[str, Any]] = []
    for contract_name, name in NAMES.items():
        if contract_name in fields:
            # The contract's own name is not Replicate's: refused as an unknown field.
            problems.append(problem(contract_name, f"unknown field: Replicate's name is {name}"))
            del fields[contract_name]
        if name in fields:
            fields[contract_name] = fields.pop(name)
    image_search = fields.pop("image_search", False)
    if not isinstance(image_search, bool):
        problems.append(problem("image_search", "must be true or false"))
    elif image_search and fields.get("enable_web_search", False) is False:
        fields["enable_web_search"] = True
    # The contract's own values (`auto`, `jpeg`) are taken too.
    for field, mapping in VALUES.items():
        for ours, theirs in mapping.items():
            if fields.get(field) == theirs:
                fields[field] = ours
    ratio = unmade_ratio(fields, "match_input_image")
    if ratio is not None:
        problems.append(ratio)
    return parse_input(json.dumps(fields).encode(), NAMES, problems)


def replicate_input(fields: dict[str, Any]) -> dict[str, Any]:
    """A job's stored contract fields as Replicate's input (what a prediction shows)."""
    shown = {}
    for name, value in fields.items():
        values = VALUES.get(name)
        shown[NAMES.get(name, name)] = values.get(value, value) if values else value
    return shown
