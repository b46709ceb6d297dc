"""Output and uploaded files, served from their signed URLs (no API key: the signature is the
permission)."""

from __future__ import annotations

import hashlib
import re
from email.utils import formatdate
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, Response, StreamingResponse
from starlette.concurrency import run_in_threadpool

from retouch.api.dependencies import app_state
from retouch.api.errors import ApiError, error_responses
from retouch.contract.errors import FORBIDDEN, NOT_FOUND, RANGE_NOT_SATISFIABLE
from retouch.media.encode import CONTENT_TYPES, FILE_EXTENSIONS
from retouch.storage.base import FileStat, Storage, is_valid_name

router = APIRouter(tags=["files"])

CONTENT_TYPE_BY_EXTENSION = {FILE_EXTENSIONS[fmt]: CONTENT_TYPES[fmt] for fmt in CONTENT_TYPES}

_SINGLE_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


def requested_range(header: str | None, size: int) -> tuple[int, int] | None:
    """The one satisfiable byte range asked for (resumed downloads), as (start, end
    exclusive); None without a Range header. Anything else is answered in our envelope
    instead of the framework's plain-text errors."""
    if header is None:
        return None
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
    if not first:
        return max(0, size - int(last)), size
    return int(first), min(int(last) + 1, size) if last else size


def validators(stat: FileStat) -> dict[str, str]:
    """Last-Modified and ETag, made as Starlette's FileResponse makes them (the local
    folder's files keep the validators they had before storage was pluggable)."""
    tag = hashlib.md5(f"{stat.modified}-{stat.size}".encode(), usedforsecurity=False)
    return {
        "last-modified": formatdate(stat.modified, usegmt=True),
        "etag": f'"{tag.hexdigest()}"',
    }


def stored_file_response(
    request: Request, storage: Storage, name: str, content_type: str, stat: FileStat
) -> Response:
    """The file streamed from storage: all of it (200), or the one range asked for (206),
    or only the headers for HEAD. An If-Range that no longer matches gets the whole file."""
    headers = {
        "content-type": content_type,
        "accept-ranges": "bytes",
        **validators(stat),
        "X-Content-Type-Options": "nosniff",
        "Cache-Control": "private, max-age=3600",
    }
    byte_range = requested_range(request.headers.get("range"), stat.size)
    if_range = request.headers.get("if-range")
    if if_range is not None and if_range not in (headers["etag"], headers["last-modified"]):
        byte_range = None
    start, end = byte_range or (0, stat.size)
    if byte_range is not None:
        headers["content-range"] = f"bytes {start}-{end - 1}/{stat.size}"
    headers["content-length"] = str(end - start)
    status = 206 if byte_range is not None else 200
    if request.method == "HEAD":
        return Response(status_code=status, headers=headers)
    # A sync iterator: Starlette reads it in a worker thread, one chunk at a time.
    return StreamingResponse(storage.stream(name, start, end), status, headers=headers)


def signed_file(
    request: Request, request_id: str, filename: str, expires: int, sig: str
) -> Response:
    state = app_state(request)
    name = f"{request_id}/{filename}"
    if not is_valid_name(name) or not state.signer.verify(name, expires, sig):
        raise ApiError(
            403,
            FORBIDDEN,
            "bad or expired signature: fetch the request's result again for fresh URLs",
        )
    if state.keys.owner_revoked(name):
        raise ApiError(403, FORBIDDEN, "this file's API key was revoked: its URLs no longer work")
    content_type = CONTENT_TYPE_BY_EXTENSION.get(filename.rpartition(".")[2])
    stat = state.storage.stat(name) if content_type is not None else None
    if content_type is None or stat is None:
        raise ApiError(404, NOT_FOUND, "file not found (it may have been deleted)")
    return stored_file_response(request, state.storage, name, content_type, stat)


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
) -> Response:
    """A file by its signed URL, as a result or an upload handed it out."""
    # In a thread: a remote store's stat is a request of its own.
    return await run_in_threadpool(signed_file, request, request_id, filename, expires, sig)


@router.head(FILE_PATH, response_class=FileResponse, responses=FILE_RESPONSES)
async def head_file(
    request: Request, request_id: str, filename: str, expires: int = 0, sig: str = ""
) -> Response:
    """The headers `get_file` would answer, without the body."""
    return await run_in_threadpool(signed_file, request, request_id, filename, expires, sig)
