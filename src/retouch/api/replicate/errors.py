"""Errors in Replicate's form: RFC 7807 problem details, `{"title", "detail", "status"}`, and
for a 422 Replicate's `invalid_fields` (`{type, field, description}`) beside them. The status
and headers are the contract's."""

from __future__ import annotations

import json
from collections.abc import Sequence
from http import HTTPStatus
from typing import Any

from fastapi.responses import Response

from retouch.api.errors import ApiError, field_path


def _in_body(loc: Sequence[Any]) -> tuple[Any, ...]:
    """A field's place as Replicate names it: the body's fields by their own names."""
    parts = tuple(loc)
    return parts[1:] if parts[:1] == ("body",) else parts


def replicate_error(error: ApiError) -> Response:
    body: dict[str, Any] = {
        "title": HTTPStatus(error.status).phrase,
        "detail": error.message,
        "status": error.status,
    }
    if error.status == 422 and error.problems:
        invalid = [
            {"type": p["type"], "field": field_path(_in_body(p["loc"])), "description": p["msg"]}
            for p in error.problems
        ]
        body["title"] = "Input validation failed"
        body["detail"] = "; ".join(f"{i['field']}: {i['description']}" for i in invalid)
        body["invalid_fields"] = invalid
    return Response(
        json.dumps(body),
        status_code=error.status,
        headers=error.headers,
        media_type="application/problem+json",
    )
