"""Uploads: `POST /v1/files` stores one image and answers a signed URL to use in
`image_urls`. The image passes the checks the worker applies to fetched inputs (bytes,
pixels, format), so a bad file is refused now instead of failing a job later."""

from __future__ import annotations

import asyncio
import hashlib
import io
import uuid
from dataclasses import dataclass
from typing import Any, Final

from fastapi import APIRouter, Request
from fastapi.responses import Response
from PIL import Image
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException

from retouch.api.dependencies import Authenticated, base_url, send
from retouch.api.errors import ApiError, error_responses, field_error
from retouch.api.state import AppState
from retouch.contract.bodies import Upload, from_timestamp
from retouch.contract.errors import BODY_TOO_LARGE
from retouch.jobs.retention import forget_upload, record_upload
from retouch.media.decode import FORMATS, decode_image
from retouch.media.encode import CONTENT_TYPES, FILE_EXTENSIONS, OutputFormat, encode_image
from retouch.media.errors import MediaError
from retouch.storage.own_files import parse_file_url

router = APIRouter()

UPLOAD_NAMESPACE: Final = uuid.UUID("5b0d7c4e-2f7a-4b8e-9a51-6d3c1e0f9a27")
# A decoded upload can take ~150 MB (a small flat PNG of 50 MP): decode a few at a time, so
# a burst of uploads cannot take the API process's memory.
MAX_CONCURRENT_DECODES: Final = 2
_DECODE_SLOTS: Final = asyncio.Semaphore(MAX_CONCURRENT_DECODES)

FIELD: Final = "file"
_HOW: Final = f"send one image as multipart/form-data in a field named '{FIELD}'"
# Pillow's format names of what we serve as it came; anything else decodable (HEIF) is
# stored re-encoded as PNG, since files are served only as JPEG, PNG or WEBP.
_SERVED: Final[dict[str, OutputFormat]] = {"JPEG": "jpeg", "PNG": "png", "WEBP": "webp"}


def invalid_file(message: str) -> ApiError:
    return field_error(FIELD, message)


@dataclass(frozen=True)
class CheckedImage:
    """An upload as it will be stored: its bytes, format and upright size."""

    data: bytes
    format: OutputFormat
    width: int
    height: int
    sha256: str


def check_image(data: bytes, max_pixels: int) -> CheckedImage:
    """`data` decoded by the worker's own code (so what passes here passes there), kept as
    sent when it is JPEG, PNG or WEBP, re-encoded as PNG otherwise. Blocking: decoding."""
    try:
        image = decode_image(data, max_pixels=max_pixels)
    except MediaError as error:
        raise invalid_file(f"{error.reason}; {_HOW}") from None
    # Decoding succeeded, so opening (which reads only the header) names the format.
    with Image.open(io.BytesIO(data), formats=FORMATS) as opened:
        served = _SERVED.get(opened.format or "")
    if served is None:
        data, served = encode_image(image, "png"), "png"
    return CheckedImage(data, served, *image.size, hashlib.sha256(data).hexdigest())


async def read_upload(request: Request, max_bytes: int) -> bytes:
    """The bytes of the one file part named `file`. The whole body is already capped by
    BodyLimitMiddleware; this applies the per-image cap of fetched inputs."""
    content_type = request.headers.get("content-type", "")
    if content_type.split(";")[0].strip().lower() != "multipart/form-data":
        raise invalid_file(f"the body is {content_type or 'untyped'!r}, not a form: {_HOW}")
    try:
        form = await request.form(max_files=1, max_fields=10)
    except StarletteHTTPException as error:
        # Starlette answers a malformed multipart body with a bare 400.
        raise invalid_file(f"unusable multipart body ({error.detail}): {_HOW}") from None
    try:
        part = form.get(FIELD)
        if part is None:
            sent = ", ".join(repr(name[:50]) for name in form) or "none"
            raise invalid_file(f"required field is missing (fields sent: {sent}): {_HOW}")
        if not isinstance(part, UploadFile):
            raise invalid_file(f"a text value, not a file, was sent: {_HOW} (with a filename)")
        # One byte over the cap is enough to refuse; the rest is never read into memory.
        data = await part.read(max_bytes + 1)
    finally:
        await form.close()
    if not data:
        raise invalid_file(f"the file is empty: {_HOW}")
    if len(data) > max_bytes:
        raise ApiError(
            413,
            BODY_TOO_LARGE,
            f"{FIELD}: the image is larger than the {max_bytes}-byte limit for an input "
            "image: downscale or recompress it",
            detail=[{"field": FIELD, "path": [FIELD], "message": f"over {max_bytes} bytes"}],
        )
    return data


def store_upload(state: AppState, key_id: str, name: str, data: bytes) -> None:
    """The file and its `uploads` row (its lifetime starts again when the same file is sent
    again), the row first: retention deletes an upload's file only while it holds an
    unchanged row (retouch.jobs.retention). A file that could not be stored (a full disk:
    StorageFull, a 507) takes its new row back. Blocking."""
    engine = state.keys.engine
    created_at = record_upload(engine, name=name, key_id=key_id, size=len(data))
    try:
        state.storage.put(name, data)
    except BaseException:
        if state.storage.stat(name) is None:
            forget_upload(engine, name=name, created_at=created_at)
        raise


_ACCEPTED_TYPES: Final = ", ".join(CONTENT_TYPES[served] for served in _SERVED.values())
UPLOAD_OPENAPI: Final[dict[str, Any]] = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": [FIELD],
                    # Other form fields are ignored, but more than 10 are refused (422).
                    "additionalProperties": False,
                    "properties": {
                        FIELD: {
                            "type": "string",
                            "format": "binary",
                            "contentMediaType": _ACCEPTED_TYPES,
                            "description": f"One image: {', '.join(FORMATS)}",
                        }
                    },
                },
                "encoding": {FIELD: {"contentType": _ACCEPTED_TYPES}},
            }
        },
    }
}


@router.post(
    "/v1/files",
    tags=["files"],
    summary="Upload an image; its signed URL can go in image_urls",
    openapi_extra=UPLOAD_OPENAPI,
    response_model=Upload,
    responses=error_responses(401, 408, 413, 422, 507),
)
async def upload_file(request: Request, caller: Authenticated) -> Response:
    """Answers `{url, expires_at, content_type, width, height, bytes}`. The URL is signed
    and expires like an output's; the file is kept for RETOUCH_RETAIN_UPLOADS (24 h; the
    key's own lifetime if it has one) from its last upload, then deleted."""
    state = caller.state
    settings = state.settings
    data = await read_upload(request, settings.fetch_max_bytes)
    async with _DECODE_SLOTS:
        checked = await run_in_threadpool(check_image, data, settings.max_input_pixels)
    # Named by the key and the content: the same file uploaded again by the same key gets the
    # same name, so a retried `edit` with an Idempotency-Key repeats its request exactly.
    folder = uuid.uuid5(UPLOAD_NAMESPACE, f"{caller.key_id}:{checked.sha256}")
    name = f"{folder}/upload.{FILE_EXTENSIONS[checked.format]}"
    await run_in_threadpool(store_upload, state, caller.key_id, name, checked.data)
    url = state.responses.file_url(base_url(request, state), name)
    signed = parse_file_url(url)
    assert signed is not None  # the URL we just built has our shape
    return send(
        Upload(
            url=url,
            expires_at=from_timestamp(signed.expires),
            content_type=CONTENT_TYPES[checked.format],
            width=checked.width,
            height=checked.height,
            size=len(checked.data),
        )
    )
