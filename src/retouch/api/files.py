"""Output and uploaded files, served from their signed URLs (no API key: the signature is the
permission)."""

from __future__ import annotations

import re
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse

from retouch.api.dependencies import app_state
from retouch.api.errors import ApiError, error_responses
from retouch.contract.errors import FORBIDDEN, NOT_FOUND, RANGE_NOT_SATISFIABLE
from retouch.media.encode import CONTENT_TYPES, FILE_EXTENSIONS

router = APIRouter(tags=["files"])

CONTENT_TYPE_BY_EXTENSION = {FILE_EXTENSIONS[fmt]: CONTENT_TYPES[fmt] for fmt in CONTENT_TYPES}

_SINGLE_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


def check_range(header: str | None, size: int) -> None:
    """Allow one satisfiable byte range (resumed downloads); anything else is answered in
    our envelope instead of the framework's plain-text errors."""
    if header is None:
        return
    match = _SINGLE_RANGE.match(header.strip())
    first, last = match.groups() if match else ("", "")
    satisfiable = (
        bool(match)
        and (first or last)
        and (
            (int(first) < size and (not last or int(last) >= int(first)))
            if first
            else int(last) > 0
        )
    )
    if not satisfiable:
        raise ApiError(
            416,
            RANGE_NOT_SATISFIABLE,
            f"unsupported or unsatisfiable Range {header[:100]!r}: ask for one range of "
            f"bytes=START-END within the file's {size} bytes, or omit the header",
        )


def signed_file(
    request: Request, request_id: str, filename: str, expires: int, sig: str
) -> FileResponse:
    state = app_state(request)
    name = f"{request_id}/{filename}"
    if not state.storage.is_valid_name(name) or not state.signer.verify(name, expires, sig):
        raise ApiError(
            403,
            FORBIDDEN,
            "bad or expired signature: fetch the request's result again for fresh URLs",
        )
    path = state.storage.path(name)
    content_type = CONTENT_TYPE_BY_EXTENSION.get(path.suffix.lstrip("."))
    if content_type is None or not path.is_file():
        raise ApiError(404, NOT_FOUND, "file not found (it may have been deleted)")
    check_range(request.headers.get("range"), path.stat().st_size)
    return FileResponse(
        path,
        media_type=content_type,
        headers={"X-Content-Type-Options": "nosniff", "Cache-Control": "private, max-age=3600"},
    )


FILE_PATH = "/v1/files/{request_id}/{filename}"
_FILE_CONTENT = {
    content_type: {"schema": {"type": "string", "format": "binary"}}
    for content_type in CONTENT_TYPE_BY_EXTENSION.values()
}
FILE_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"description": "The file", "content": _FILE_CONTENT},
    206: {"description": "The byte range a Range header asked for", "content": _FILE_CONTENT},
    **error_responses(403, 404, 416, 422),
}


# GET and HEAD are two operations (an OpenAPI operation id must be unique) on one handler.
@router.get(FILE_PATH, response_class=FileResponse, responses=FILE_RESPONSES)
async def get_file(
    request: Request, request_id: str, filename: str, expires: int = 0, sig: str = ""
) -> FileResponse:
    """A file by its signed URL, as a result or an upload handed it out."""
    return signed_file(request, request_id, filename, expires, sig)


@router.head(FILE_PATH, response_class=FileResponse, responses=FILE_RESPONSES)
async def head_file(
    request: Request, request_id: str, filename: str, expires: int = 0, sig: str = ""
) -> FileResponse:
    """The headers `get_file` would answer, without the body."""
    return signed_file(request, request_id, filename, expires, sig)
