"""Errors in fal's form: `{"detail": "…"}`, and for a 422 pydantic's list, `{"detail":
[{"loc": ["body", "prompt"], "msg": "…", "type": "…"}]}`, as fal's apps answer them. The
status and headers are the contract's, but for an Idempotency-Key conflict: 422, not 409,
which fal's clients retry."""

from __future__ import annotations

import json
from typing import Any

from fastapi.responses import Response

from retouch.api.errors import ApiError
from retouch.contract.errors import IDEMPOTENCY_CONFLICT

# Where an input can come from, as the first part of a pydantic `loc`.
_LOCATIONS = frozenset({"body", "query", "header", "path"})


def location(loc: list[Any]) -> list[Any]:
    """A problem's `loc` with where the input was first (a body field's has none yet)."""
    return loc if loc and loc[0] in _LOCATIONS else ["body", *loc]


def fal_error(error: ApiError) -> Response:
    detail: Any = error.message
    status = error.status
    if error.code == IDEMPOTENCY_CONFLICT:
        # fal's clients retry a 409 (ten times, backing off): a key reused for another body
        # never succeeds, so it is the 422 of an input that cannot be taken.
        status = 422
    if error.status == 422 and error.problems:
        detail = [
            {"loc": location(list(p["loc"])), "msg": p["msg"], "type": p["type"]}
            for p in error.problems
        ]
    return Response(
        json.dumps({"detail": detail}),
        status_code=status,
        headers=error.headers,
        media_type="application/json",
    )
