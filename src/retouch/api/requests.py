"""The contract's request routes: submit, status, result, the event stream, the request list
and cancel."""

from __future__ import annotations

import functools
import logging
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response
from fastapi.sse import EventSourceResponse
from starlette.concurrency import run_in_threadpool
from starlette.convertors import Convertor, register_url_convertor

from retouch.api import submit_options
from retouch.api.dependencies import (
    Authenticated,
    PageCursor,
    PageLimit,
    authenticate,
    authenticates_itself,
    base_url,
    check_endpoint,
    find_job,
    parse_cursor,
    query_flag,
    send,
    store_read,
)
from retouch.api.errors import error_responses
from retouch.api.operations import (
    cancel_job,
    job_and_logs,
    parse_input,
    submit_job,
)
from retouch.api.state import AppState
from retouch.api.stream import result_body, status_events, wait_for_end
from retouch.contract.bodies import (
    CancelOutcome,
    RequestList,
    Result,
    Status,
    Submission,
)
from retouch.contract.idempotency import HEADER as IDEMPOTENCY_HEADER
from retouch.contract.idempotency import PATTERN as IDEMPOTENCY_PATTERN
from retouch.contract.inputs import input_schema
from retouch.contract.states import STATUS_NAMES, CancelOutcomeName, JobState
from retouch.jobs.models import Job
from retouch.log_context import bind_request_id
from retouch.responses import retry_after

router = APIRouter(tags=["requests"])
log = logging.getLogger(__name__)


SUBMIT_OPENAPI: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": input_schema()}},
    },
    "parameters": [
        {
            "name": IDEMPOTENCY_HEADER,
            "in": "header",
            "required": False,
            "description": "Makes retries safe: the same key and body within 24 h answer the "
            "first request again (Idempotent-Replayed: true)",
            "schema": {"type": "string", "pattern": IDEMPOTENCY_PATTERN, "maxLength": 255},
        },
        {
            "name": "Prefer",
            "in": "header",
            "required": False,
            "description": "wait=N (0 to 60): answer with the result body if the job ends "
            "within N seconds",
            "schema": {"type": "string"},
        },
    ],
}


# One server-sent event of the stream: its data is a Status or, last, a Result body.
STREAM_EVENT: dict[str, Any] = {
    "type": "object",
    "required": ["event", "data"],
    "properties": {
        "event": {"type": "string", "enum": ["status", "result"]},
        "data": {
            "type": "string",
            "contentMediaType": "application/json",
            "contentSchema": {
                "anyOf": [
                    {"$ref": "#/components/schemas/Status"},
                    {"$ref": "#/components/schemas/Result"},
                ]
            },
        },
    },
}

# Where a submit's request_id leads (OpenAPI links: generated clients and fuzzers follow them).
FOLLOW_LINKS: dict[str, Any] = {
    operation: {
        "operationId": operation,
        "parameters": {"request_id": "$response.body#/request_id"},
    }
    for operation in ("get_status", "get_result", "stream_events", "cancel_request")
}


async def _submit(
    request: Request, state: AppState, owner: str, endpoint: str, webhook: str | None
) -> Response:
    check_endpoint(state, endpoint)
    wait = submit_options.prefer_wait(request.headers.get("prefer"))
    key = submit_options.idempotency_key(request.headers.get("idempotency-key"))
    hook = submit_options.webhook_url(webhook, state.settings.fetch_allow)
    # Validation of a large body (data: URIs) must not hold up the event loop.
    fields = await run_in_threadpool(parse_input, await request.body())
    base = base_url(request, state)
    job = await submit_job(
        state,
        owner=owner,
        endpoint=endpoint,
        fields=fields,
        webhook=hook,
        base=base,
        idempotency_key=key,
    )
    headers = {"Idempotent-Replayed": "true"} if job.replayed else {}
    body: Submission | Result = state.responses.submitted(base, job)
    if wait is not None:
        headers["Preference-Applied"] = f"wait={wait}"
        finished = await wait_for_end(state, job.id, owner, wait)
        if finished is not None:
            body = await store_read(state, functools.partial(result_body, state, base, finished))
    return send(body, headers=headers)


class _EndpointIdConvertor(Convertor[str]):
    """An endpoint id of any depth in a route's path (`owner/model/task`,
    `owner/model/variant/task`…): segments that are not empty, no slash first or last, and not
    ending in `/schema` (no served id does: retouch.served_endpoints), so that a POST to a
    schema URL answers 405 as the OpenAPI says, not 400001. Not Starlette's `path` (`.*`): it
    would match `/v1/models/` (GET /v1/models/ would answer 405 rather than redirect to the
    list), and a trailing slash redirects here as on every route."""

    regex = "[^/]+(?:/[^/]+)*(?<!/schema)"

    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        return value


register_url_convertor("endpoint_id", _EndpointIdConvertor())
# The path of an endpoint id of any depth (the `endpoint_id` path parameter). The documented
# routes name the three parts of the usual id (generated clients and the OpenAPI's enums of
# the served parts rely on them); a hidden route of any depth beside each takes the others,
# served or not (an unknown id answers 400001 naming it, as a three-part one does).
ANY_ENDPOINT_ID = "/v1/models/{endpoint_id:endpoint_id}"

Webhook = Annotated[
    str | None,
    Query(
        description="POST the result here when the job ends (signed)",
        # Checked by submit_options.webhook_url, with a message naming what is wrong.
        json_schema_extra={"format": "uri", "pattern": "^https?://", "maxLength": 2048},
    ),
]


@router.post(
    "/v1/models/{owner_name}/{model_name}/{task}",
    summary="Submit a request to an endpoint (GET /v1/models lists them)",
    openapi_extra=SUBMIT_OPENAPI,
    response_model=Submission | Result,
    responses={
        200: {"links": FOLLOW_LINKS},
        **error_responses(400, 401, 408, 409, 413, 422, 429, 503, 507),
    },
)
async def submit_edit(
    request: Request,
    caller: Authenticated,
    owner_name: str,
    model_name: str,
    task: str,
    webhook: Webhook = None,
) -> Response:
    """Answers the request id and its URLs; with `Prefer: wait=N`, the result body when the job
    ends within N seconds."""
    endpoint = f"{owner_name}/{model_name}/{task}"
    return await _submit(request, caller.state, caller.key_id, endpoint, webhook)


# After submit_edit, so that a three-part id is always its route (and its metrics' template).
@router.post(ANY_ENDPOINT_ID, include_in_schema=False)
async def submit_edit_any_depth(
    request: Request, caller: Authenticated, endpoint_id: str, webhook: Webhook = None
) -> Response:
    """submit_edit for an endpoint id of any other depth (`owner/model/variant/task`…)."""
    return await _submit(request, caller.state, caller.key_id, endpoint_id, webhook)


def read_job_body(
    state: AppState, base: str, request_id: str, owner: str, logs: bool, view: str
) -> tuple[Job, Status | Result]:
    """The job and its status or result body; `logs` adds its timestamped log lines.
    Blocking: every store read of one poll, done in one thread hop."""
    job, lines = job_and_logs(state, request_id, owner, logs)
    body = state.responses.status(base, job) if view == "status" else result_body(state, base, job)
    if lines is not None:
        body.logs = lines
    return job, body


async def job_body(request: Request, view: str) -> Response:
    """A status or result poll, reading its parameters itself (see JOB_READ_OPENAPI)."""
    caller = await authenticate(request)
    logs = query_flag(request, "logs")
    request_id: str = request.path_params["request_id"]
    state = caller.state
    base = base_url(request, state)
    job, body = await store_read(
        state,
        functools.partial(read_job_body, state, base, request_id, caller.key_id, logs, view),
    )
    bind_request_id(job.id)
    wait = retry_after(job)
    return send(body, headers={"Retry-After": str(wait)} if wait is not None else None)


_LOGS_DESCRIPTION = "Add the job's timestamped log lines"
# The polls' parameters as FastAPI would declare them from `request_id: str` and
# `logs: bool = Query(False)`: the handlers take only the request, since FastAPI's resolution
# of parameters and of Depends(authenticate) cost more than the rest of a poll. The stream
# reads `logs` the same way (query_flag), and declares the same parameter.
LOGS_PARAMETER: dict[str, Any] = {
    "name": "logs",
    "in": "query",
    "required": False,
    "schema": {
        "type": "boolean",
        "description": _LOGS_DESCRIPTION,
        "default": False,
        "title": "Logs",
    },
    "description": _LOGS_DESCRIPTION,
}
JOB_READ_OPENAPI: dict[str, Any] = {
    "parameters": [
        {
            "name": "request_id",
            "in": "path",
            "required": True,
            "schema": {"type": "string", "title": "Request Id"},
        },
        LOGS_PARAMETER,
    ]
}


@router.get(
    "/v1/requests/{request_id}/status",
    response_model=Status,
    responses=error_responses(401, 404, 422),
    openapi_extra=JOB_READ_OPENAPI,
)
@authenticates_itself
async def get_status(request: Request) -> Response:
    """`Retry-After` says when to ask again while the job is unfinished."""
    return await job_body(request, "status")


@router.get(
    "/v1/requests/{request_id}/result",
    response_model=Result,
    responses=error_responses(401, 404, 422),
    openapi_extra=JOB_READ_OPENAPI,
)
@authenticates_itself
async def get_result(request: Request) -> Response:
    """`Retry-After` says when to ask again while the job is unfinished."""
    return await job_body(request, "result")


# Not response_class=EventSourceResponse: FastAPI would then expect a generator endpoint, and
# this one answers a plain 404 before any stream starts.
@router.get(
    "/v1/requests/{request_id}/stream",
    response_model=None,
    response_class=Response,  # no JSON body to declare: the events are described below
    responses={
        200: {
            "description": "Server-sent events: `status` (a Status body) on every change, "
            "then `result` (a Result body), then the stream closes",
            "content": {"text/event-stream": {"schema": STREAM_EVENT}},
        },
        **error_responses(401, 404, 422),
    },
    # Read by query_flag, as the polls read it: the same spellings and the same 422.
    openapi_extra={"parameters": [LOGS_PARAMETER]},
)
async def stream_events(
    request: Request, request_id: str, caller: Authenticated
) -> EventSourceResponse:
    """Server-sent events: `status` (the status body) on every change, then `result` (the
    result body) when the job ends, then the stream closes. `logs=1`: both bodies carry the
    job's log lines so far, and a new log line is a change."""
    logs = query_flag(request, "logs")
    state = caller.state
    # A 404 before the stream starts.
    job = await store_read(state, functools.partial(find_job, state, request_id, caller.key_id))
    bind_request_id(job.id)
    events = status_events(state, base_url(request, state), job.id, caller.key_id, logs=logs)
    # no-cache and no proxy buffering: each event must reach the client when it happens.
    return EventSourceResponse(
        events, headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    )


@router.get(
    "/v1/requests",
    response_model=RequestList,
    responses=error_responses(401, 422),
)
async def list_requests(
    request: Request,
    caller: Authenticated,
    limit: PageLimit = 20,
    cursor: PageCursor = None,
) -> Response:
    """This key's requests, newest first."""
    before = parse_cursor(cursor)
    state = caller.state
    page = await store_read(
        state,
        functools.partial(state.store.list_jobs, key_id=caller.key_id, limit=limit, before=before),
    )
    base = base_url(request, state)
    return send(
        RequestList(
            requests=[state.responses.listed(base, job) for job in page.jobs],
            next_cursor=str(page.next_cursor) if page.next_cursor is not None else None,
        )
    )


@router.post(
    "/v1/requests/{request_id}/cancel",
    status_code=202,
    response_model=CancelOutcome,
    responses=error_responses(401, 404, 422),
)
async def cancel_request(request_id: str, caller: Authenticated) -> Response:
    """`outcome` is `cancelled` for a queued job, `not_cancellable` for one that has started
    or ended; repeating it is harmless. An admin key cancels any key's job."""
    job, _ = await cancel_job(caller.state, request_id, caller.key_id)
    outcome: CancelOutcomeName = (
        "cancelled" if job.state is JobState.CANCELLED else "not_cancellable"
    )
    body = CancelOutcome(request_id=job.id, status=STATUS_NAMES[job.state], outcome=outcome)
    return send(body, status_code=202)
