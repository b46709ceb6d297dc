"""What every route module shares: the app state, authentication, the request lookup, and
sending a typed body."""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, TypeVar

from fastapi import Depends, Query, Request
from fastapi.responses import Response
from pydantic import TypeAdapter, ValidationError
from starlette.concurrency import run_in_threadpool

from retouch.api.errors import ApiError, field_error, invalid_input
from retouch.api.state import AppState
from retouch.auth.keys import KeyRecord
from retouch.config import format_duration
from retouch.contract.bodies import Body
from retouch.contract.errors import FORBIDDEN, NOT_FOUND, UNAUTHORIZED, UNKNOWN_MODEL
from retouch.jobs.models import Job

T = TypeVar("T")
H = TypeVar("H", bound=Callable[..., Any])


def app_state(request: Request) -> AppState:
    state: AppState = request.app.state.retouch
    return state


def base_url(request: Request, state: AppState) -> str:
    if state.settings.public_base_url:
        return state.settings.public_base_url.rstrip("/")
    return str(request.base_url).rstrip("/")


@dataclass(frozen=True)
class Caller:
    """The app state and the key id of an authenticated request."""

    state: AppState
    key_id: str


async def authenticate(request: Request) -> Caller:
    """One flat dependency (no sub-dependencies): resolving a tree of them costs more than a
    status poll's database read. The OpenAPI's bearer scheme is added for every route that
    depends on this (retouch.api.openapi)."""
    return await authenticate_with(request, BEARER)


BEARER = ("Bearer",)


async def authenticate_with(request: Request, schemes: tuple[str, ...]) -> Caller:
    """`authenticate` for a surface whose clients send the key under other schemes too (fal's
    `Key`, Replicate's `Token`): the first is the one the 401 asks for."""
    state = app_state(request)
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    challenge = {"WWW-Authenticate": schemes[0]}
    if scheme.lower() not in {name.lower() for name in schemes} or not token.strip():
        others = f" (or {', '.join(schemes[1:])} instead of {schemes[0]})" if schemes[1:] else ""
        raise ApiError(
            401,
            UNAUTHORIZED,
            f"missing API key: send the header 'Authorization: {schemes[0]} <key>'{others}",
            headers=challenge,
        )
    key = token.strip()
    known, found = state.keys.cached_verdict(key)
    if not known:
        found = await store_read(state, functools.partial(state.keys.authenticate, key))
    if found is None:
        raise ApiError(
            401,
            UNAUTHORIZED,
            "invalid or revoked API key: create one with `retouch keys create --name NAME`",
            headers=challenge,
        )
    return Caller(state, found)


Authenticated = Annotated[Caller, Depends(authenticate)]


async def authenticate_admin(request: Request) -> Caller:
    """An authenticated caller whose key is an admin key; 403001 for a user key."""
    caller = await authenticate(request)
    if not (await key_record(caller.state, caller.key_id)).is_admin:
        raise ApiError(
            403,
            FORBIDDEN,
            "this route needs an admin key: create one with `retouch keys create --admin`, "
            "or make this one an admin with `retouch keys edit KEY --role admin`",
        )
    return caller


AdminCaller = Annotated[Caller, Depends(authenticate_admin)]


async def key_record(state: AppState, key_id: str) -> KeyRecord:
    """The authenticated key's record (role, limits): cached by authenticate, so usually no
    read. 401 when the key vanished since."""
    record = state.keys.cached_record(key_id)
    if record is None:
        record = await store_read(state, functools.partial(state.keys.record, key_id))
    if record is None or record.revoked_at is not None:
        raise ApiError(
            401,
            UNAUTHORIZED,
            "invalid or revoked API key: create one with `retouch keys create --name NAME`",
            headers={"WWW-Authenticate": "Bearer"},
        )
    return record


# Handlers that call `authenticate` themselves: FastAPI's resolution of a dependency costs
# more than a status poll's database read. The OpenAPI's bearer scheme is added to them too.
AUTHENTICATES_ITSELF: set[Callable[..., Any]] = set()


def authenticates_itself(handler: H) -> H:
    AUTHENTICATES_ITSELF.add(handler)
    return handler


_FLAG: TypeAdapter[bool] = TypeAdapter(bool)

# A list's cursor is a job's seq: ASCII digits within SQLite's 64-bit integers.
CURSOR_PATTERN = r"^[0-9]{1,19}$"


# A list's page parameters, as every list route declares them.
PageLimit = Annotated[int, Query(ge=1, le=100)]
PageCursor = Annotated[
    str | None,
    # Checked by parse_cursor, with a message saying what to send instead of pydantic's.
    Query(
        description="next_cursor of the previous page",
        json_schema_extra={"pattern": CURSOR_PATTERN},
    ),
]


def parse_cursor(cursor: str | None) -> int | None:
    """The seq a list's `cursor` query parameter names (None: the first page); 422 for
    anything this API did not hand out."""
    if cursor is None:
        return None
    if not (re.fullmatch(CURSOR_PATTERN, cursor) and int(cursor) < 2**63):
        raise field_error("cursor", "not a cursor from this API: pass next_cursor as it came")
    return int(cursor)


def query_flag(request: Request, name: str) -> bool:
    """A boolean query parameter (false when absent) read as FastAPI reads a `bool` Query: its
    last value, the same spellings accepted, and the same 422 for any other."""
    if not request.scope.get("query_string"):  # most polls: no query to parse
        return False
    value = request.query_params.get(name)
    if value is None:
        return False
    try:
        return _FLAG.validate_python(value)
    except ValidationError as error:
        located = [{**e, "loc": ("query", name, *e["loc"])} for e in error.errors()]
        raise invalid_input(located) from None


async def store_read(state: AppState, read: Callable[[], T]) -> T:
    """A blocking read of the store or the keys: on the event loop when the store's reads are
    local (SQLite: ~30 µs, never waiting on writers, against ~0.5 ms for a thread hop under
    load), on a thread otherwise (a network round trip must never stall other requests)."""
    if state.store.local_reads:
        return read()
    return await run_in_threadpool(read)


def request_not_found(request_id: str) -> ApiError:
    return ApiError(404, NOT_FOUND, f"request {request_id} not found (or expired)")


def request_expired(state: AppState, job: Job) -> ApiError:
    """The 404 of a job retention has deleted (retouch.jobs.retention), saying so and how
    long results are kept. Blocking (the key's own lifetime may be read)."""
    record = state.keys.record(job.key_id)
    own = record.limits.retain_results_seconds if record is not None else None
    kept = format_duration(own if own is not None else state.settings.retain_results)
    setting = "this API key's --retain-results" if own is not None else "RETOUCH_RETAIN_RESULTS"
    return ApiError(
        404,
        NOT_FOUND,
        f"request {job.id} expired: its results and files are kept for {kept} after it "
        f"ends ({setting}), and have been deleted",
    )


def find_job(state: AppState, request_id: str, owner: str) -> Job:
    """The caller's job, or a 404 (also once it expired). Blocking: call it through
    `store_read`."""
    job = state.store.get(request_id, key_id=owner)
    if job is None:
        raise request_not_found(request_id)
    if job.expired_at is not None:
        raise request_expired(state, job)
    return job


def check_endpoint(state: AppState, endpoint: str) -> None:
    if endpoint not in state.endpoints:
        known = ", ".join(state.endpoints)
        raise ApiError(
            400, UNKNOWN_MODEL, f"unknown model id {endpoint!r}; this server serves: {known}"
        )


def send(body: Body, status_code: int = 200, headers: dict[str, str] | None = None) -> Response:
    """A typed body as JSON, serialised by pydantic directly: FastAPI's generic encoding of a
    returned model validates it again and costs more than a status poll's database read."""
    return Response(
        body.to_json(), status_code=status_code, headers=headers, media_type="application/json"
    )
