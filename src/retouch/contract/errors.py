"""The error envelope `{error_code, error_message, detail?}` and its numeric codes (RunComfy
style: the HTTP status and a number), shared by the API that answers them and the SDK that
reads them."""

from __future__ import annotations

from typing import Final

from pydantic import BaseModel, ConfigDict, Field

from retouch.contract.bodies import Body

UNKNOWN_MODEL: Final = 400001
UNAUTHORIZED: Final = 401001
FORBIDDEN: Final = 403001
NOT_FOUND: Final = 404001
UNKNOWN_ROUTE: Final = 404002
METHOD_NOT_ALLOWED: Final = 405001
SLOW_BODY: Final = 408001
IDEMPOTENCY_CONFLICT: Final = 409001
# fal's surface only, whose error form shows no code: its response of an unfinished request.
NOT_FINISHED: Final = 400002
BODY_TOO_LARGE: Final = 413001
RANGE_NOT_SATISFIABLE: Final = 416001
INVALID_INPUT: Final = 422001
RATE_LIMITED: Final = 429001
HEADERS_TOO_LARGE: Final = 431001
INTERNAL: Final = 500001
OVERLOADED: Final = 503001
# fal's surface only: a synchronous run (`/fal-run/`) that outlasted its wait.
GATEWAY_TIMEOUT: Final = 504001
STORAGE_FULL: Final = 507001


class FieldProblem(BaseModel):
    """One bad input: `field` as a person reads it (`image_urls[2]`, `Prefer`), `path` as a
    program walks it (`["image_urls", 2]`), and what to do about it."""

    model_config = ConfigDict(extra="allow")

    field: str
    path: list[str | int]
    message: str


class ErrorBody(Body):
    """Every error the API answers, with a real HTTP status; `detail` lists the bad fields of a
    422001 (and of a 413001 about one input)."""

    error_code: int = Field(description="HTTP status × 1000 + a number, e.g. 422001")
    error_message: str = Field(description="What went wrong, which input, what to do")
    detail: list[FieldProblem] | None = None
