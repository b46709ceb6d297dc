"""The contract's routes, the model listing and the signed output files."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import FileResponse, JSONResponse
from fastapi.sse import EventSourceResponse
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool

from retouch.api import submit_options
from retouch.api.errors import (
    FORBIDDEN,
    IDEMPOTENCY_CONFLICT,
    INVALID_INPUT,
    NOT_FOUND,
    OVERLOADED,
    RANGE_NOT_SATISFIABLE,
    UNAUTHORIZED,
    UNKNOWN_MODEL,
    ApiError,
    field_error,
    invalid_input,
)
from retouch.api.state import AppState
from retouch.api.stream import result_body, status_events, wait_for_end
from retouch.contract.inputs import INPUT_MODEL, input_schema
from retouch.contract.states import STATUS_NAMES, JobState
from retouch.engine.registry import describe_kind
from retouch.jobs.models import Idempotency, IdempotencyConflict, Job, QueueFull
from retouch.media.encode import CONTENT_TYPES, FILE_EXTENSIONS

router = APIRouter()

# A worker that has not reported for this long is not listed (it reports every few seconds).
WORKER_ALIVE_SECONDS = 30.0

CONTENT_TYPE_BY_EXTENSION = {FILE_EXTENSIONS[fmt]: CONTENT_TYPES[fmt] for fmt in CONTENT_TYPES}


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
    status poll's database read."""
    state = app_state(request)
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise ApiError(
            401,
            UNAUTHORIZED,
            "missing API key: send the header 'Authorization: Bearer <key>'",
            headers={"WWW-Authenticate": "Bearer"},
        )
    found = state.keys.authenticate(token.strip())
    if found is None:
        raise ApiError(
            401,
            UNAUTHORIZED,
            "invalid or revoked API key: create one with `retouch keys create --name NAME`",
            headers={"WWW-Authenticate": "Bearer"},
        )
    return Caller(state, found)


Authenticated = Annotated[Caller, Depends(authenticate)]


def find_job(state: AppState, request_id: str, owner: str) -> Job:
    job = state.store.get(request_id, key_id=owner)
    if job is None:
        raise ApiError(404, NOT_FOUND, f"request {request_id} not found (or expired)")
    return job


def check_endpoint(state: AppState, endpoint: str) -> None:
    if endpoint not in state.endpoints:
        known = ", ".join(state.endpoints)
        raise ApiError(
            400, UNKNOWN_MODEL, f"unknown model id {endpoint!r}; this server serves: {known}"
        )


def parse_input(body: bytes) -> dict[str, Any]:
    try:
        json.loads(body)
    except (ValueError, RecursionError) as error:
        raise ApiError(
            422,
            INVALID_INPUT,
            "invalid input: the body is not valid JSON",
            detail=[{"field": "body", "path": [], "message": f"not valid JSON: {error}"}],
        ) from None
    try:
        return INPUT_MODEL.model_validate_json(body).model_dump(mode="json")
    except ValidationError as error:
        raise invalid_input([dict(e) for e in error.errors()]) from None


def parse_submission(
    body: bytes, endpoint: str, key: str | None, webhook: str | None, state: AppState
) -> tuple[dict[str, Any], Idempotency | None]:
    """The validated fields, and the idempotency record when a key was sent. Blocking."""
    fields = parse_input(body)
    if key is None:
        return fields, None
    digest = submit_options.request_hash(endpoint, fields, webhook, state.signer)
    return fields, Idempotency(key, digest)


SUBMIT_OPENAPI = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": input_schema()}},
    }
}


async def _submit(
    request: Request, state: AppState, owner: str, endpoint: str, webhook: str | None
) -> JSONResponse:
    check_endpoint(state, endpoint)
    wait = submit_options.prefer_wait(request.headers.get("prefer"))
    key = submit_options.idempotency_key(request.headers.get("idempotency-key"))
    hook = submit_options.webhook_url(webhook, state.settings.fetch_allow)
    # Validation and hashing of a large body (data: URIs) must not hold up the event loop.
    fields, idempotency = await run_in_threadpool(
        parse_submission, await request.body(), endpoint, key, hook, state
    )
    base = base_url(request, state)
    try:
        job = await run_in_threadpool(
            state.store.submit,
            key_id=owner,
            endpoint=endpoint,
            input=fields,
            max_queued=state.settings.max_queued_jobs,
            webhook_url=hook,
            base_url=base,
            idempotency=idempotency,
        )
    except QueueFull:
        raise ApiError(
            503,
            OVERLOADED,
            "the queue is full: retry after a few seconds",
            headers={"Retry-After": "5"},
        ) from None
    except IdempotencyConflict as conflict:
        raise ApiError(
            409,
            IDEMPOTENCY_CONFLICT,
            f"Idempotency-Key {key!r} was used in the last 24 h for a different request "
            f"({conflict.job_id}): send exactly the same body to get that request back, or "
            "use a new key for a new request",
        ) from None
    headers = {"Idempotent-Replayed": "true"} if job.replayed else {}
    body = state.views.submitted(base, job)
    if wait is not None:
        headers["Preference-Applied"] = f"wait={wait}"
        finished = await wait_for_end(state, job.id, owner, wait)
        if finished is not None:
            body = result_body(state, base, finished)
    return JSONResponse(body, headers=headers)


@router.post(
    "/v1/models/{owner_name}/{model_name}/{task}",
    tags=["requests"],
    summary="Submit a request to an endpoint (GET /v1/models lists them)",
    openapi_extra=SUBMIT_OPENAPI,
    response_class=JSONResponse,
)
async def submit(
    request: Request,
    caller: Authenticated,
    owner_name: str,
    model_name: str,
    task: str,
    webhook: Annotated[
        str | None, Query(description="POST the result here when the job ends (signed)")
    ] = None,
) -> JSONResponse:
    """Headers: `Idempotency-Key` makes retries safe (24 h); `Prefer: wait=N` (N ≤ 60) answers
    with the result body when the job ends within N seconds."""
    endpoint = f"{owner_name}/{model_name}/{task}"
    return await _submit(request, caller.state, caller.key_id, endpoint, webhook)


def job_body(
    request: Request, request_id: str, caller: Caller, logs: bool, view: str
) -> JSONResponse:
    """The status or result body of a job; `?logs=1` adds its timestamped log lines."""
    state = caller.state
    job = find_job(state, request_id, caller.key_id)
    base = base_url(request, state)
    body = state.views.status(base, job) if view == "status" else result_body(state, base, job)
    if logs:
        body["logs"] = state.views.logs(state.store.logs(job.id))
    retry_after = state.views.retry_after(job)
    headers = {"Retry-After": str(retry_after)} if retry_after is not None else None
    # JSONResponse directly: FastAPI's generic encoding of a returned dict costs more than the
    # database read on these hot paths.
    return JSONResponse(body, headers=headers)


@router.get("/v1/requests/{request_id}/status", tags=["requests"], response_class=JSONResponse)
async def status(
    request: Request, request_id: str, caller: Authenticated, logs: bool = False
) -> JSONResponse:
    """`?logs=1` adds the job's timestamped log lines."""
    return job_body(request, request_id, caller, logs, "status")


@router.get("/v1/requests/{request_id}/result", tags=["requests"], response_class=JSONResponse)
async def result(
    request: Request, request_id: str, caller: Authenticated, logs: bool = False
) -> JSONResponse:
    """`?logs=1` adds the job's timestamped log lines."""
    return job_body(request, request_id, caller, logs, "result")


# Not response_class=EventSourceResponse: FastAPI would then expect a generator endpoint, and
# this one answers a plain 404 before any stream starts.
@router.get(
    "/v1/requests/{request_id}/stream",
    tags=["requests"],
    response_model=None,
    responses={200: {"content": {"text/event-stream": {}}}},
)
async def stream(request: Request, request_id: str, caller: Authenticated) -> EventSourceResponse:
    """Server-sent events: `status` (the status body) on every change, then `result` (the
    result body) when the job ends, then the stream closes."""
    state = caller.state
    job = find_job(state, request_id, caller.key_id)  # a 404 before the stream starts
    events = status_events(state, base_url(request, state), job.id, caller.key_id)
    # no-cache and no proxy buffering: each event must reach the client when it happens.
    return EventSourceResponse(
        events, headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    )


@router.get("/v1/requests", tags=["requests"], response_class=JSONResponse)
async def list_requests(
    request: Request,
    caller: Authenticated,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    cursor: Annotated[str | None, Query(description="next_cursor of the previous page")] = None,
) -> JSONResponse:
    """This key's requests, newest first."""
    # A cursor is a job's seq: ASCII digits within SQLite's 64-bit integers.
    if cursor is not None and not (re.fullmatch(r"[0-9]{1,19}", cursor) and int(cursor) < 2**63):
        raise field_error("cursor", "not a cursor from this API: pass next_cursor as it came")
    state = caller.state
    page = state.store.list_jobs(
        key_id=caller.key_id, limit=limit, before=int(cursor) if cursor else None
    )
    base = base_url(request, state)
    return JSONResponse(
        {
            "requests": [state.views.listed(base, job) for job in page.jobs],
            "next_cursor": str(page.next_cursor) if page.next_cursor is not None else None,
        }
    )


@router.post("/v1/requests/{request_id}/cancel", status_code=202, tags=["requests"])
async def cancel(request_id: str, caller: Authenticated) -> dict[str, Any]:
    state, owner = caller.state, caller.key_id
    found = await run_in_threadpool(
        state.store.cancel,
        request_id,
        key_id=owner,
        running_too=state.settings.cancel_running,
    )
    if found is None:
        raise ApiError(404, NOT_FOUND, f"request {request_id} not found (or expired)")
    job, _ = found
    outcome = "cancelled" if job.state is JobState.CANCELLED else "not_cancellable"
    return {"request_id": job.id, "status": STATUS_NAMES[job.state], "outcome": outcome}


@router.get("/v1/models", tags=["models"])
async def list_models(request: Request, caller: Authenticated) -> dict[str, Any]:
    state = caller.state
    base = base_url(request, state)
    return {
        "models": [
            {
                "id": endpoint.id,
                "engine": endpoint.engine,
                "model": endpoint.model or "preview",
                "preview": endpoint.preview,
                "supports": describe_kind(endpoint.engine),
                "schema_url": f"{base}/v1/models/{endpoint.id}/schema",
            }
            for endpoint in state.endpoints.values()
        ]
    }


@router.get("/v1/models/{endpoint:path}/schema", tags=["models"])
async def model_schema(endpoint: str, caller: Authenticated) -> dict[str, Any]:
    check_endpoint(caller.state, endpoint)
    return input_schema()


@router.get("/v1/workers", tags=["operations"])
async def list_workers(caller: Authenticated) -> dict[str, Any]:
    """Workers alive now: what each serves, its engines, and its memory."""
    store = caller.state.store
    return {"workers": caller.state.views.workers(store.workers(seen_within=WORKER_ALIVE_SECONDS))}


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


@router.api_route(
    "/v1/files/{request_id}/{filename}",
    methods=["GET", "HEAD"],
    tags=["files"],
    response_model=None,
)
async def output_file(
    request: Request,
    request_id: str,
    filename: str,
    expires: int = 0,
    sig: str = "",
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
