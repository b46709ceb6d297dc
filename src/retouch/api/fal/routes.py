"""fal's queue routes under /fal/: submit to an app id, then status (202 until completed),
its event stream, the response, and cancel, each on `…/{owner}/{alias}/requests/{id}`."""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response
from fastapi.sse import EventSourceResponse, format_sse_event
from starlette.concurrency import run_in_threadpool

from retouch.api import submit_options
from retouch.api.dependencies import (
    Caller,
    authenticate_with,
    base_url,
    find_job,
    query_flag,
    request_not_found,
    send,
    store_read,
)
from retouch.api.errors import ApiError
from retouch.api.fal import bodies
from retouch.api.fal.inputs import fal_fields
from retouch.api.operations import cancel_job, job_and_logs, submit_job
from retouch.api.state import AppState
from retouch.api.stream import follow_job, wait_for_end
from retouch.contract.bodies import Body
from retouch.contract.errors import GATEWAY_TIMEOUT, NOT_FINISHED, UNKNOWN_MODEL
from retouch.contract.states import FINISHED_STATES, JobState
from retouch.jobs.models import Job
from retouch.jobs.outage import is_unavailable
from retouch.log_context import bind_request_id
from retouch.served_endpoints import Endpoint

router = APIRouter(prefix=bodies.PREFIX, include_in_schema=False)
# fal's synchronous runs (`fal.run`) have a host of their own: a prefix of their own here.
run_router = APIRouter(prefix=bodies.RUN_PREFIX, include_in_schema=False)
# How long a synchronous run holds its answer.
RUN_WAIT_SECONDS = 300
# fal's clients send `Authorization: Key …`; ours send Bearer.
SCHEMES = ("Key", "Bearer")


async def authenticate_fal(request: Request) -> Caller:
    return await authenticate_with(request, SCHEMES)


FalCaller = Annotated[Caller, Depends(authenticate_fal)]


# fal's servers name the request of every answer about one; fal's npm client reads it.
REQUEST_ID_HEADER = "x-fal-request-id"


def fal_answer(body: Body, request_id: str, status_code: int = 200) -> Response:
    return send(body, status_code, headers={REQUEST_ID_HEADER: request_id})


def fal_endpoint(state: AppState, app_id: str) -> Endpoint:
    """The served endpoint an app id names: by its fal id, else by its own id."""
    for endpoint in state.endpoints.values():
        if endpoint.fal_id == app_id:
            return endpoint
    if app_id in state.endpoints:
        return state.endpoints[app_id]
    known = ", ".join(endpoint.fal_id for endpoint in state.endpoints.values())
    raise ApiError(404, UNKNOWN_MODEL, f"unknown app {app_id!r}; this server serves: {known}")


async def _submit(
    request: Request, caller: Caller, app_id: str, fal_webhook: str | None
) -> tuple[Job, str]:
    """The job a submit (queued or run) made, and the base of its URLs."""
    state = caller.state
    endpoint = fal_endpoint(state, app_id)
    key = submit_options.idempotency_key(request.headers.get("idempotency-key"))
    hook = submit_options.webhook_url(fal_webhook, state.settings.fetch_allow, "fal_webhook")
    fields, sync_mode = await run_in_threadpool(fal_fields, await request.body())
    surface = bodies.SYNC_SURFACE if sync_mode else bodies.SURFACE
    base = base_url(request, state)
    job = await submit_job(
        state,
        owner=caller.key_id,
        endpoint=endpoint.id,
        fields=fields,
        webhook=hook,
        base=base,
        idempotency_key=key,
        surface=surface,
    )
    return job, base


FalWebhookUrl = Annotated[str | None, Query()]


@router.post("/{app_id:path}")
async def fal_submit(
    request: Request, caller: FalCaller, app_id: str, fal_webhook: FalWebhookUrl = None
) -> Response:
    state = caller.state
    job, base = await _submit(request, caller, app_id, fal_webhook)
    if job.queue_position is None and job.state is JobState.QUEUED:
        try:
            job = await store_read(state, functools.partial(find_job, state, job.id, caller.key_id))
        except Exception as error:
            # The job is stored: a 503 now would have the client submit it again.
            if not is_unavailable(error):
                raise
    return fal_answer(bodies.submitted(state, base, job), job.id)


@run_router.post("/{app_id:path}")
async def fal_run(
    request: Request, caller: FalCaller, app_id: str, fal_webhook: FalWebhookUrl = None
) -> Response:
    """fal's synchronous run (`fal.run`, FAL_RUN_HOST): the model's output once the job ends,
    as the queue's response answers it; 504 naming the request if it runs longer than
    RUN_WAIT_SECONDS (it goes on: follow it on the queue's routes)."""
    state = caller.state
    job, base = await _submit(request, caller, app_id, fal_webhook)
    if await wait_for_end(state, job.id, caller.key_id, RUN_WAIT_SECONDS) is None:
        root = bodies.request_root(state, base, job)
        # A timeout of the caller's kind ("user"): fal's clients do not retry it (a retry would
        # submit the edit again).
        raise ApiError(
            504,
            GATEWAY_TIMEOUT,
            f"request {job.id} has not finished (it ran past {RUN_WAIT_SECONDS} s, or the "
            f"server is restarting); it goes on: follow it at {root}/status",
            headers={REQUEST_ID_HEADER: job.id, "X-Fal-Request-Timeout-Type": "user"},
        )
    return await run_in_threadpool(_response, state, base, job.id, caller.key_id)


RequestPath = "/{owner}/{alias}/requests/{request_id}"


@router.get(RequestPath + "/status")
async def fal_status(request: Request, caller: FalCaller, request_id: str) -> Response:
    """202 while queued or running, 200 once completed (fal's codes)."""
    state = caller.state
    logs = query_flag(request, "logs")
    read = functools.partial(job_and_logs, state, request_id, caller.key_id, logs)
    job, lines = await store_read(state, read)
    bind_request_id(job.id)
    body = bodies.status(state, base_url(request, state), job, lines)
    return fal_answer(body, job.id, 200 if job.state in FINISHED_STATES else 202)


@router.get(RequestPath + "/status/stream")
async def fal_status_stream(
    request: Request, caller: FalCaller, request_id: str
) -> EventSourceResponse:
    """A status event (fal's status body as `data`) at each change, the last COMPLETED."""
    state = caller.state
    logs = query_flag(request, "logs")
    job = await store_read(state, functools.partial(find_job, state, request_id, caller.key_id))
    bind_request_id(job.id)
    base = base_url(request, state)

    async def events() -> AsyncIterator[bytes]:
        sent = None
        # Nothing more to read once ended: the last status is the event.
        followed = follow_job(state, job.id, caller.key_id, lambda job: job, logs=logs)
        async for snapshot in followed:
            if isinstance(snapshot, str):
                yield format_sse_event(comment=snapshot)
                continue
            body = bodies.status(state, base, snapshot.job, snapshot.lines)
            if body != sent:
                yield format_sse_event(data_str=body.to_json().decode())
                sent = body

    return EventSourceResponse(
        events(),
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no", REQUEST_ID_HEADER: job.id},
    )


def _response(state: AppState, base: str, request_id: str, owner: str) -> Response:
    """A request's response as fal answers it. Blocking (a store read; sync_mode's images
    are read from storage)."""
    job = find_job(state, request_id, owner)
    bind_request_id(job.id)
    failed = bodies.failure(job)
    if failed is not None:
        message, error_type = failed
        status_code = 422 if error_type in bodies.INPUT_FAILURES else 500
        if job.state is JobState.CANCELLED:
            status_code = 400
        return fal_answer(
            bodies.FalError(detail=message, error_type=error_type), job.id, status_code
        )
    if job.state is not JobState.SUCCEEDED:
        raise ApiError(
            400,
            NOT_FINISHED,
            "the request is still in progress: poll its status_url until COMPLETED",
        )
    sync_mode = job.surface == bodies.SYNC_SURFACE
    try:
        output = bodies.output(state, base, job, data_uris=sync_mode)
    except FileNotFoundError:  # retention is deleting them (or the operator did)
        raise request_not_found(job.id) from None
    return fal_answer(output, job.id)


@router.get(RequestPath)
@router.get(RequestPath + "/response")
async def fal_response(request: Request, caller: FalCaller, request_id: str) -> Response:
    """The model's output once completed; a failed job's error (422 for its input, 500 for
    the server's part) or a cancelled one's (400), as fal answers them."""
    state = caller.state
    base = base_url(request, state)
    return await run_in_threadpool(_response, state, base, request_id, caller.key_id)


@router.put(RequestPath + "/cancel")
async def fal_cancel(caller: FalCaller, request_id: str) -> Response:
    """202 CANCELLATION_REQUESTED for a job cancelled (now or before); 400 for one that has
    ended, or has started and cannot be stopped (RETOUCH_CANCEL_RUNNING is off); 404."""
    state = caller.state
    try:
        job, _ = await cancel_job(state, request_id, caller.key_id)
    except ApiError as error:
        if error.status != 404:
            raise
        return send(bodies.CancelAnswer(status="NOT_FOUND", detail=error.message), 404)
    if job.state is JobState.CANCELLED:
        return fal_answer(bodies.CancelAnswer(status="CANCELLATION_REQUESTED"), job.id, 202)
    if job.state in FINISHED_STATES:
        ended = bodies.CancelAnswer(status="ALREADY_COMPLETED", detail="the request has ended")
        return fal_answer(ended, job.id, 400)
    return fal_answer(
        bodies.CancelAnswer(
            status="IN_PROGRESS",
            detail="the request has started, and this server lets started requests finish "
            "(the operator's RETOUCH_CANCEL_RUNNING)",
        ),
        job.id,
        400,
    )
