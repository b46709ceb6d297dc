"""The admin queue view: every key's requests, filterable by state and key, with per-key
counts and storage use; and the operator's queue overview per endpoint with recent failures.
Admin keys only (`retouch keys create --admin`)."""

from __future__ import annotations

import functools
from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from retouch.api.dependencies import (
    AdminCaller,
    PageCursor,
    PageLimit,
    base_url,
    parse_cursor,
    send,
    store_read,
)
from retouch.api.errors import error_responses
from retouch.api.state import AppState
from retouch.contract.bodies import (
    AdminRequest,
    AdminRequestList,
    EndpointQueue,
    FailureCount,
    KeyActivity,
    QueueOverview,
    from_timestamp,
)
from retouch.contract.states import RESULT_NAMES, JobState, ResultStatusName
from retouch.jobs.models import Job, QueueSnapshot, RequestPage
from retouch.jobs.retention import usage_by_key

router = APIRouter(tags=["operations"])

_STATES: dict[str, JobState] = {name: state for state, name in RESULT_NAMES.items()}


def _listed(state: AppState, base: str, job: Job) -> AdminRequest:
    summary = state.responses.listed(base, job)
    position = None
    if job.state is JobState.QUEUED:  # the list's read leaves positions out: one read each
        current = state.store.get(job.id, key_id=job.key_id)
        position = current.queue_position if current is not None else None
    return AdminRequest(
        **summary.model_dump(exclude_unset=True),
        key_id=job.key_id,
        queue_position=position,
        worker_id=job.worker_id if job.state is JobState.RUNNING else None,
        error_code=job.error_code,
    )


def _view(state: AppState, base: str, page: RequestPage, key_id: str | None) -> AdminRequestList:
    """The page, with every key's counts (or the one key's). Blocking: reads."""
    counts = state.store.jobs_per_key()
    usage = usage_by_key(state.keys.engine)
    records = {record.id: record for record in state.keys.list_keys()}
    shown = sorted(set(counts) | set(usage) | set(records))
    if key_id is not None:
        shown = [key_id] if key_id in shown else []
    keys = []
    for shown_id in shown:
        record = records.get(shown_id)
        by_state = counts.get(shown_id, {})
        used = usage.get(shown_id)
        keys.append(
            KeyActivity(
                key_id=shown_id,
                name=record.name if record else None,
                role=record.role if record else None,
                revoked=record is not None and record.revoked_at is not None,
                **{RESULT_NAMES_BY_FIELD[s]: by_state.get(s, 0) for s in RESULT_NAMES_BY_FIELD},
                output_bytes=used.output_bytes if used else 0,
                upload_bytes=used.upload_bytes if used else 0,
            )
        )
    return AdminRequestList(
        requests=[_listed(state, base, job) for job in page.jobs],
        next_cursor=str(page.next_cursor) if page.next_cursor is not None else None,
        keys=keys,
    )


# KeyActivity's count fields, by the state they count.
RESULT_NAMES_BY_FIELD: dict[JobState, str] = {
    JobState.QUEUED: "queued",
    JobState.RUNNING: "running",
    JobState.SUCCEEDED: "succeeded",
    JobState.FAILED: "failed",
    JobState.CANCELLED: "cancelled",
}


@router.get(
    "/v1/admin/requests",
    response_model=AdminRequestList,
    responses=error_responses(401, 403, 422),
)
async def list_all_requests(
    request: Request,
    caller: AdminCaller,
    status: Annotated[
        ResultStatusName | None,
        Query(description="Only requests in this status, as /result names it"),
    ] = None,
    key_id: Annotated[
        str | None, Query(max_length=32, description="Only this key's requests")
    ] = None,
    limit: PageLimit = 20,
    cursor: PageCursor = None,
) -> Response:
    """Every key's requests, newest first, and each key's counts and storage use."""
    before = parse_cursor(cursor)
    state = caller.state
    page = await store_read(
        state,
        functools.partial(
            state.store.list_jobs,
            key_id=key_id,
            limit=limit,
            before=before,
            state=_STATES[status] if status is not None else None,
        ),
    )
    base = base_url(request, state)
    return send(await store_read(state, functools.partial(_view, state, base, page, key_id)))


DAY_SECONDS = 24 * 3600.0


def _overview(endpoint_ids: list[str], snapshot: QueueSnapshot, window: float) -> QueueOverview:
    """Every served endpoint (idle ones too) and any other with unfinished jobs, by id, and
    the failures as read."""
    load_of = {load.endpoint: load for load in snapshot.endpoints}
    endpoints = []
    for endpoint in sorted(set(endpoint_ids) | set(load_of)):
        load = load_of.get(endpoint)
        queued_at = load.oldest_queued_at if load is not None else None
        endpoints.append(
            EndpointQueue(
                endpoint=endpoint,
                queued=load.queued if load is not None else 0,
                running=load.running if load is not None else 0,
                oldest_queued_at=from_timestamp(queued_at),
                oldest_queued_request=load.oldest_queued_id if load is not None else None,
                # Clamped: the submit may have run on another host whose clock is ahead.
                oldest_wait_seconds=(
                    None if queued_at is None else round(max(0.0, snapshot.at - queued_at), 1)
                ),
            )
        )
    return QueueOverview(
        endpoints=endpoints,
        failures=[
            FailureCount(
                code=failure.code,
                count=failure.count,
                last_at=from_timestamp(failure.last_at),
                last_request=failure.last_id,
                last_message=failure.last_message,
            )
            for failure in snapshot.failures
        ],
        window_seconds=window,
        failures_since=from_timestamp(snapshot.at - window),
    )


@router.get(
    "/v1/admin/queue",
    response_model=QueueOverview,
    responses=error_responses(401, 403, 422),
)
async def get_queue_overview(
    caller: AdminCaller,
    window: Annotated[
        float,
        Query(
            ge=60,
            le=7 * DAY_SECONDS,
            description="Count the failures finished in the last `window` seconds (60 s to 7 days)",
        ),
    ] = 3600.0,
) -> Response:
    """Per endpoint, the jobs queued and running and the one waiting longest; the failures
    of the window by error code, most frequent first, each with its newest request."""
    state = caller.state
    snapshot = await store_read(
        state, functools.partial(state.store.queue_overview, failures_within=window)
    )
    return send(_overview(list(state.endpoints), snapshot, window))
