"""The SDK's typed errors, and the mapping from an HTTP error response to one of them."""

from __future__ import annotations

import builtins
from collections.abc import Mapping
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Any

import httpx
from pydantic import ValidationError

from retouch.contract.errors import ErrorBody

if TYPE_CHECKING:
    from retouch.client.models import CancelOutcome, Result, Status


class RetouchError(Exception):
    """Base of every SDK error.

    `status_code` is the HTTP status (None when there was no response), `error_code` the
    server's numeric code (401001, 422001…) or a failed job's code (`content_policy_violation`),
    `message` what went wrong, `detail` the server's details (the bad fields of a 422001),
    `retry_after` the seconds a `Retry-After` header asked for, `request_id` the request it
    concerns once one was submitted (None before, or for an error about no request)."""

    def __init__(
        self,
        status_code: int | None,
        error_code: int | str | None,
        message: str,
        detail: Any = None,
        *,
        retry_after: float | None = None,
        request_id: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.error_code = error_code
        self.message = message
        self.detail = detail
        self.retry_after = retry_after
        self.request_id = request_id

    def __str__(self) -> str:
        return self.message if self.error_code is None else f"{self.error_code}: {self.message}"


class BadRequestError(RetouchError):
    """400 (unknown model id) and the other 4xx answers without a class of their own."""


class InvalidEndpointError(BadRequestError, ValueError):
    """An endpoint id no server could serve (empty, spaces, `..`), refused before anything
    is sent; also a builtin `ValueError`."""


class InvalidInputError(BadRequestError):
    """422 (invalid input: `detail` lists every bad field) and 413 (body too large)."""


class AuthenticationError(RetouchError):
    """401: the key is missing, wrong or revoked."""


class PermissionDeniedError(RetouchError):
    """403: e.g. an output file's signature is bad or expired (fetch the result again)."""


class NotFoundError(RetouchError):
    """404: no such request (or it belongs to another key), or no such route."""


class ConflictError(RetouchError):
    """409: e.g. an idempotency key reused with a different request body."""


class RateLimitError(RetouchError):
    """429: too many requests; `retry_after` says when to try again."""


class ServerError(RetouchError):
    """5xx, or an answer the SDK cannot read."""


class OverloadedError(ServerError):
    """503: the queue is full; `retry_after` says when to try again."""


class APIConnectionError(RetouchError, builtins.ConnectionError):
    """The server could not be reached, or the connection failed, after the allowed retries.
    Also a builtin `ConnectionError` (an `OSError`), so `except ConnectionError` catches it."""


# The name before 0.2 (it shadowed the builtin when imported unqualified); the same class.
ConnectionError = APIConnectionError


class ConfigurationError(RetouchError):
    """The client's configuration is unusable (a bad config file or URL)."""


class MissingApiKeyError(ConfigurationError):
    """No API key was given in any of the places the client looks."""


class InvalidApiKeyError(ConfigurationError):
    """The API key has a character an HTTP header cannot carry (a space, a control or a
    non-ASCII character): it could never authenticate."""


class JobFailed(RetouchError):
    """The job ended `failed`: `error_code` and `message` come from the result's `error`."""

    def __init__(self, result: Result) -> None:
        code = result.error.code if result.error else "failed"
        message = result.error.message if result.error else "the job failed"
        super().__init__(
            None,
            code,
            f"request {result.request_id} failed: {message}",
            request_id=result.request_id,
        )
        self.result = result


class JobCancelled(RetouchError):
    """The job was cancelled before it finished."""

    def __init__(self, result: Result) -> None:
        super().__init__(
            None,
            "cancelled",
            f"request {result.request_id} was cancelled",
            request_id=result.request_id,
        )
        self.result = result


class WaitTimeout(RetouchError, TimeoutError):
    """Waiting took longer than its timeout (also a builtin `TimeoutError`). The job goes on:
    resume with `client.wait(request_id)`, unless the wait was to cancel it
    (`cancel_on_timeout`): `cancel_outcome` is then the cancel's answer (`.cancelled`), or
    `cancel_error` the error that stopped it. `status` is the last status seen (None if none
    was)."""

    def __init__(
        self,
        request_id: str,
        timeout: float | None,
        status: Status | None,
        *,
        cancel_outcome: CancelOutcome | None = None,
        cancel_error: RetouchError | None = None,
    ) -> None:
        state = f" (still {status.status})" if status is not None else ""
        late = f"request {request_id} has not finished after {timeout} s{state}"
        resume = f"it goes on: resume with client.wait({request_id!r})"
        if cancel_outcome is not None and cancel_outcome.cancelled:
            message = f"{late}; cancelled it (cancel_on_timeout)"
        elif cancel_outcome is not None:
            message = (
                f"{late}; could not cancel it: it is {cancel_outcome.status} and only a queued "
                f"request can be cancelled; {resume}"
            )
        elif cancel_error is not None:
            message = (
                f"{late}; the cancel failed ({cancel_error}): it may go on; see "
                f"client.status({request_id!r})"
            )
        else:
            message = f"{late}; {resume}"
        super().__init__(None, "timeout", message, request_id=request_id)
        self.timeout = timeout
        self.status = status
        self.cancel_outcome = cancel_outcome
        self.cancel_error = cancel_error

    @property
    def cancelled(self) -> bool:
        """Whether the request is cancelled now (by cancel_on_timeout)."""
        return self.cancel_outcome is not None and self.cancel_outcome.cancelled


_BY_STATUS: dict[int, type[RetouchError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    403: PermissionDeniedError,
    404: NotFoundError,
    409: ConflictError,
    413: InvalidInputError,
    422: InvalidInputError,
    429: RateLimitError,
    503: OverloadedError,
}


def retry_after(headers: Mapping[str, str]) -> float | None:
    """Seconds from a `Retry-After` header: a number of seconds or an HTTP date."""
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return max(0.0, (moment - datetime.now(UTC)).total_seconds())


def error_body(response: httpx.Response) -> ErrorBody | None:
    """The error envelope `{error_code, error_message, detail?}`, or None when the body is
    something else (a proxy's HTML page, say). The response must have been read."""
    try:
        return ErrorBody.model_validate_json(response.content)
    except ValidationError:
        return None


def error_from_response(response: httpx.Response) -> RetouchError:
    """The typed error of an error response (which must have been read)."""
    body = error_body(response)
    status = response.status_code
    if body is not None:
        message = body.error_message
    else:
        text = response.text.strip()[:300]
        message = f"HTTP {status} {response.reason_phrase}" + (f": {text}" if text else "")
    detail = None
    if body is not None and body.detail is not None:
        detail = [problem.model_dump() for problem in body.detail]
    error_class = _BY_STATUS.get(status) or (ServerError if status >= 500 else BadRequestError)
    return error_class(
        status,
        body.error_code if body is not None else None,
        message,
        detail,
        retry_after=retry_after(response.headers),
    )
