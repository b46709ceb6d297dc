"""The error envelope `{error_code, error_message, detail?}` with a real HTTP status, for every
error the API can answer, including the framework's own (unknown route, wrong method). Under
the fal and Replicate surfaces' prefixes the same errors are answered in their forms
(`ErrorForms`: retouch.api.fal, retouch.api.replicate), with the same statuses."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any, Final

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from fastapi.routing import APIRoute
from pydantic import ValidationError
from sqlalchemy import exc
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import compile_path

from retouch.contract.errors import (
    INTERNAL,
    INVALID_INPUT,
    METHOD_NOT_ALLOWED,
    OVERLOADED,
    STORAGE_FULL,
    UNKNOWN_ROUTE,
    ErrorBody,
)
from retouch.jobs.outage import describe, is_busy, is_unavailable
from retouch.storage.base import is_storage_full

log = logging.getLogger(__name__)


class ApiError(Exception):
    def __init__(
        self,
        status: int,
        code: int,
        message: str,
        *,
        detail: Any = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.detail = detail
        self.headers = headers
        self.problems: list[Problem] = []
        """For a 422: each bad input as pydantic reports it (`loc`, `msg`, `type`), for the
        surfaces whose error forms carry them."""


# One bad input: pydantic's `loc`, `msg` (what to do, as `detail` words it) and `type`.
Problem = dict[str, Any]
# How a surface answers an ApiError, by the path prefix it serves.
ErrorForm = Callable[[ApiError], Response]
ErrorForms = Mapping[str, ErrorForm]


def envelope(error: ApiError) -> Response:
    """The contract's own form of an error."""
    return error_response(error.status, error.code, error.message, error.detail, error.headers)


def answer(forms: ErrorForms, path: str, error: ApiError) -> Response:
    """The error in the form of the surface serving `path` (the contract's own elsewhere)."""
    for prefix, form in forms.items():
        if path.startswith(prefix):
            return form(error)
    return envelope(error)


def error_response(
    status: int,
    code: int,
    message: str,
    detail: Any = None,
    headers: dict[str, str] | None = None,
) -> Response:
    given = {} if detail is None else {"detail": detail}
    body = ErrorBody(error_code=code, error_message=message, **given)
    return Response(
        body.to_json(),
        status_code=status,
        headers=headers,
        media_type="application/json",
    )


# What each error status means, for the `responses` every route declares in the OpenAPI.
_ERROR_MEANINGS = {
    400: "Unknown model id (400001)",
    401: "Missing, invalid or revoked API key (401001)",
    403: "Bad or expired file signature (403001)",
    404: "No such request, or not this key's, or expired (404001)",
    408: "The request's headers or body were too slow to arrive (408001)",
    409: "Idempotency-Key reused for a different request (409001)",
    413: "Body, or one input image, too large (413001)",
    416: "Unsatisfiable Range (416001)",
    422: "Invalid input: `detail` lists every bad field (422001)",
    429: "Rate limited (429001), with Retry-After",
    431: "Request line and headers larger than 16 KiB (431001)",
    500: "Internal error (500001)",
    503: "Overloaded: the queue is full, or the job database is unreachable or busy (503001), "
    "with Retry-After",
    507: "The server's storage (files or job database) is full (507001): retry later, and "
    "tell the operator",
}

# A client told to come back after this long finds a restarted database answering: workers
# and the API reconnect within about a second of it.
DATABASE_RETRY_AFTER_SECONDS: Final = 5
# While the database is down every request fails the same way: one warning this often.
DATABASE_WARNING_SECONDS: Final = 10.0


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """The error answers of a route, each with the envelope's schema: always 500, and 503,
    which any route answers while the job database is down (authenticating reads it)."""
    return {
        status: {"model": ErrorBody, "description": _ERROR_MEANINGS[status]}
        for status in sorted({*statuses, 500, 503})
    }


class _Throttled:
    """Logs at most one warning per interval (with how many it left out)."""

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self._lock = threading.Lock()
        self._last = -interval
        self._skipped = 0

    def warning(self, message: str) -> None:
        with self._lock:
            now = time.monotonic()
            if now - self._last < self.interval:
                self._skipped += 1
                return
            skipped, self._skipped, self._last = self._skipped, 0, now
        more = f" ({skipped} more since the last warning)" if skipped else ""
        log.warning("%s%s", message, more)


_database_warnings = _Throttled(DATABASE_WARNING_SECONDS)


def database_unavailable(error: Exception) -> ApiError | None:
    """The 503 for an error of a database that does not answer now; None for any other
    error (a bug: a 500)."""
    if not is_unavailable(error):
        return None
    state = "busy" if is_busy(error) else "unreachable"
    _database_warnings.warning(f"the job database is {state}, answering 503: {describe(error)}")
    return ApiError(
        503,
        OVERLOADED,
        f"the job database is {state}: retry in a few seconds",
        headers={"Retry-After": str(DATABASE_RETRY_AFTER_SECONDS)},
    )


_storage_warnings = _Throttled(DATABASE_WARNING_SECONDS)
STORAGE_FULL_MESSAGE: Final = (
    "the server's storage is full: nothing was kept of this request; retry later, and tell "
    "the operator"
)


def storage_full(error: BaseException) -> ApiError | None:
    """The 507 for a write that found the disk (of the files or of the job database) full;
    None for any other error."""
    if not is_storage_full(error):
        return None
    _storage_warnings.warning(f"storage is full, answering 507: {describe(error)}")
    return ApiError(507, STORAGE_FULL, STORAGE_FULL_MESSAGE)


def field_path(location: tuple[int | str, ...]) -> str:
    """("image_urls", 2) → "image_urls[2]"; the empty location is the body itself."""
    path = ""
    for part in location:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path or "body"


def _message(error: dict[str, Any]) -> str:
    kind = error["type"]
    if kind == "extra_forbidden":
        return "unknown field: remove it (check its spelling against the input schema)"
    if kind == "missing":
        return "required field is missing"
    if kind == "model_type":
        return "the body must be a JSON object"
    message = str(error["msg"])
    return message.removeprefix("Value error, ")


def validation_detail(errors: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        {"field": field_path(tuple(e["loc"])), "path": list(e["loc"]), "message": _message(e)}
        for e in errors
    ]


def invalid_input(errors: list[dict[str, Any]]) -> ApiError:
    detail = validation_detail(errors)
    fields = ", ".join(d["field"] for d in detail)
    error = ApiError(422, INVALID_INPUT, f"invalid input: {fields}", detail=detail)
    error.problems = [
        {"loc": list(e["loc"]), "msg": d["message"], "type": e["type"]}
        for e, d in zip(errors, detail, strict=True)
    ]
    return error


def field_error(field: str, message: str, location: str = "query") -> ApiError:
    """A 422 about one input outside the JSON body: a header, a query parameter, a form field
    (`location`, for the surfaces whose forms say where the input was)."""
    detail = [{"field": field, "path": [field], "message": message}]
    error = ApiError(422, INVALID_INPUT, f"invalid input: {field}: {message}", detail=detail)
    error.problems = [{"loc": [location, field], "msg": message, "type": "value_error"}]
    return error


def documented_methods(app: FastAPI, path: str) -> list[str]:
    """The methods the OpenAPI document lists for the path template matching `path`; for a
    path outside it, those of every route the document leaves out that matches it (the fal
    and Replicate surfaces': `app.state.undocumented_routes`)."""
    methods: set[str] = set()
    for template, operations in app.openapi()["paths"].items():
        if compile_path(template)[0].match(path):
            methods.update(method.upper() for method in operations)
    if not methods:
        for route in getattr(app.state, "undocumented_routes", ()):
            if isinstance(route, APIRoute) and route.path_regex.match(path):
                methods.update(route.methods or ())
    return sorted(methods)


def install_error_handlers(app: FastAPI, forms: ErrorForms | None = None) -> None:
    """Every error answered as an ApiError, in the form of the surface of its path."""
    app.state.error_forms = forms = dict(forms or {})

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, error: ApiError) -> Response:
        return answer(forms, request.url.path, error)

    async def _database(request: Request, error: Exception) -> Response:
        full = storage_full(error)
        if full is not None:
            return await _api_error(request, full)
        unavailable = database_unavailable(error)
        if unavailable is None:
            raise error  # a bug, for the 500 handler below
        return await _api_error(request, unavailable)

    # DBAPIError covers OperationalError and InterfaceError; TimeoutError is the pool's.
    for database_error in (exc.DBAPIError, exc.TimeoutError):
        app.add_exception_handler(database_error, _database)

    # A full disk (storage.base.StorageFull is an OSError, and so is ENOSPC from anything
    # else a request writes, a spooled form part say): answered here, by the exception
    # middleware, so the connection stays open for the next request.
    @app.exception_handler(OSError)
    async def _os_error(request: Request, error: OSError) -> Response:
        full = storage_full(error)
        if full is None:
            raise error  # for the 500 handler below
        return await _api_error(request, full)

    @app.exception_handler(RequestValidationError)
    async def _request_validation(request: Request, error: RequestValidationError) -> Response:
        return await _api_error(request, invalid_input([dict(e) for e in error.errors()]))

    @app.exception_handler(ValidationError)
    async def _validation(request: Request, error: ValidationError) -> Response:
        return await _api_error(request, invalid_input([dict(e) for e in error.errors()]))

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, error: StarletteHTTPException) -> Response:
        if error.status_code == 404:
            unknown = ApiError(404, UNKNOWN_ROUTE, "no such route: see /docs for the API")
            return await _api_error(request, unknown)
        headers = dict(error.headers or {})
        if error.status_code == 405:
            # RFC 9110 requires `Allow`. Starlette names only the first route matching the
            # path; a path served by several (GET and POST /v1/webhooks/secret) has them all
            # in the OpenAPI document.
            documented = documented_methods(request.app, request.url.path)
            if documented:
                headers["Allow"] = ", ".join(documented)
            wrong_method = ApiError(
                405,
                METHOD_NOT_ALLOWED,
                "method not allowed on this route: see /docs",
                headers=headers,
            )
            return await _api_error(request, wrong_method)
        other = ApiError(
            error.status_code, error.status_code * 1000 + 1, str(error.detail), headers=headers
        )
        return await _api_error(request, other)

    @app.exception_handler(Exception)
    async def _internal(request: Request, error: Exception) -> Response:
        log.exception("internal error", exc_info=error)
        internal = ApiError(500, INTERNAL, "internal error: the operator's log has the details")
        return answer(forms, request.url.path, internal)
