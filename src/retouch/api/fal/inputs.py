"""fal's input forms for the model, translated to the contract's fields.

fal's schema for nano-banana-2/edit has the contract's field names; it differs in
`safety_tolerance` (the strings "1"–"6"), four more aspect ratios (made by no engine here:
refused by name), an optional `seed` (absent: the contract's default, 0) and `sync_mode`
(the result's images as data: URIs instead of URLs)."""

from __future__ import annotations

import json
from typing import Any, Final

from retouch.api.operations import json_object, parse_input, problem, unmade_ratio

TOLERANCES: Final = ("1", "2", "3", "4", "5", "6")


def fal_fields(body: bytes) -> tuple[dict[str, Any], bool]:
    """The contract's validated fields of a fal body, and its `sync_mode`. Every bad field is
    named in one 422, fal's own forms' problems with the contract's. Blocking."""
    raw = json_object(body)
    problems: list[dict[str, Any]] = []
    sync_mode = raw.pop("sync_mode", False)
    if not isinstance(sync_mode, bool):
        problems.append(problem("sync_mode", "must be true or false"))
    tolerance = raw.get("safety_tolerance")
    if isinstance(tolerance, str):
        if tolerance in TOLERANCES:
            raw["safety_tolerance"] = int(tolerance)
        else:
            raw.pop("safety_tolerance")
            problems.append(problem("safety_tolerance", 'must be one of the strings "1" to "6"'))
    ratio = unmade_ratio(raw, "auto")
    if ratio is not None:
        problems.append(ratio)
    if "seed" in raw and raw["seed"] is None:
        del raw["seed"]  # fal's "no seed"; the contract's default is 0
    return parse_input(json.dumps(raw).encode(), problems=problems), sync_mode
