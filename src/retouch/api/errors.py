"""The error envelope `{error_code, error_message, detail?}` with a real HTTP status, for every
error the API can answer, including the framework's own (unknown route, wrong method)."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

log = logging.getLogger("retouch.api")

UNKNOWN_MODEL = 400001
UNAUTHORIZED = 401001
FORBIDDEN = 403001
NOT_FOUND = 404001
UNKNOWN_ROUTE = 404002
METHOD_NOT_ALLOWED = 405001
SLOW_BODY = 408001
IDEMPOTENCY_CONFLICT = 409001
BODY_TOO_LARGE = 413001
INVALID_INPUT = 422001
RANGE_NOT_SATISFIABLE = 416001
RATE_LIMITED = 429001
INTERNAL = 500001
OVERLOADED = 503001


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


def error_response(
    status: int,
    code: int,
    message: str,
    detail: Any = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    body: dict[str, Any] = {"error_code": code, "error_message": message}
    if detail is not None:
        body["detail"] = detail
    return JSONResponse(body, status_code=status, headers=headers)


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
    return ApiError(422, INVALID_INPUT, f"invalid input: {fields}", detail=detail)


def field_error(field: str, message: str) -> ApiError:
    """A 422 about one input outside the JSON body: a header, a query parameter, a form field."""
    detail = [{"field": field, "path": [field], "message": message}]
    return ApiError(422, INVALID_INPUT, f"invalid input: {field}: {message}", detail=detail)


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(_request: Request, error: ApiError) -> JSONResponse:
        return error_response(error.status, error.code, error.message, error.detail, error.headers)

    @app.exception_handler(RequestValidationError)
    async def _request_validation(_request: Request, error: RequestValidationError) -> JSONResponse:
        errors = [dict(e) for e in error.errors()]
        api_error = invalid_input(errors)
        return error_response(422, INVALID_INPUT, api_error.message, api_error.detail)

    @app.exception_handler(ValidationError)
    async def _validation(_request: Request, error: ValidationError) -> JSONResponse:
        api_error = invalid_input([dict(e) for e in error.errors()])
        return error_response(422, INVALID_INPUT, api_error.message, api_error.detail)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_request: Request, error: StarletteHTTPException) -> JSONResponse:
        if error.status_code == 404:
            return error_response(404, UNKNOWN_ROUTE, "no such route: see /docs for the API")
        if error.status_code == 405:
            return error_response(
                405, METHOD_NOT_ALLOWED, "method not allowed on this route: see /docs"
            )
        return error_response(
            error.status_code,
            error.status_code * 1000 + 1,
            str(error.detail),
            None,
            dict(error.headers or {}),
        )

    @app.exception_handler(Exception)
    async def _internal(_request: Request, error: Exception) -> JSONResponse:
        log.exception("internal error", exc_info=error)
        return error_response(500, INTERNAL, "internal error: the operator's log has the details")
