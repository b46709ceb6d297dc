"""Replicate's prediction routes under /replicate/v1/: create one for a model (with
`Prefer: wait`), get, cancel, list, stream, and the webhook secret."""

from __future__ import annotations

import dataclasses
import functools
import itertools
import json
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from fastapi.sse import EventSourceResponse, format_sse_event
from starlette.concurrency import run_in_threadpool

from retouch.api import submit_options
from retouch.api.dependencies import (
    Caller,
    PageCursor,
    authenticate_with,
    base_url,
    find_job,
    parse_cursor,
    send,
    store_read,
)
from retouch.api.errors import ApiError, invalid_input
from retouch.api.operations import (
    cancel_job,
    json_object,
    problem,
    submit_job,
)
from retouch.api.replicate import bodies
from retouch.api.replicate.inputs import contract_fields
from retouch.api.state import AppState
from retouch.api.stream import follow_job, wait_for_end
from retouch.contract.errors import NOT_FOUND
from retouch.log_context import bind_request_id
from retouch.served_endpoints import Endpoint

router = APIRouter(prefix=f"{bodies.PREFIX}/v1", include_in_schema=False)
# Replicate's clients send `Authorization: Bearer …` (older ones `Token …`).
SCHEMES = ("Bearer", "Token")
# What a bare `Prefer: wait` waits: under the 60 s the `replicate` client allows it (its
# read timeout is the wait + 0.5 s), so the answer arrives before the client gives up.
BARE_WAIT_SECONDS = 55
PAGE_SIZE = 100


async def authenticate_replicate(request: Request) -> Caller:
    return await authenticate_with(request, SCHEMES)


ReplicateCaller = Annotated[Caller, Depends(authenticate_replicate)]


def replicate_endpoint(state: AppState, owner: str, name: str) -> Endpoint:
    model = f"{owner}/{name}"
    for endpoint in state.endpoints.values():
        if endpoint.replicate_id == model:
            return endpoint
    known = ", ".join(endpoint.replicate_id for endpoint in state.endpoints.values())
    raise ApiError(404, NOT_FOUND, f"model {model!r} not found; this server serves: {known}")


def _request_fields(body: bytes, versioned: bool = False) -> tuple[dict[str, Any], str | None]:
    """The contract's fields of a create body `{input, webhook?, webhook_completed?,
    webhook_events_filter?}` (and `version` when `versioned`), and its webhook; every bad
    field in one 422. Blocking."""
    raw = json_object(body)
    problems = []
    if versioned:
        raw.pop("version", None)  # read by the route
    webhook = raw.pop("webhook", None)
    completed = raw.pop("webhook_completed", None)  # the completed event's URL
    for name, url in (("webhook", webhook), ("webhook_completed", completed)):
        if url is not None and not isinstance(url, str):
            problems.append(problem(name, "must be an http:// or https:// URL"))
    if not isinstance(webhook, str | None) or not isinstance(completed, str | None):
        webhook = completed = None
    if completed is not None and webhook is not None and completed != webhook:
        problems.append(
            problem("webhook_completed", "this server sends one webhook: give one URL only")
        )
    webhook = webhook if webhook is not None else completed
    events = raw.pop("webhook_events_filter", None)
    if events is not None and (
        not isinstance(events, list)
        or not all(isinstance(event, str) and event in bodies.WEBHOOK_EVENTS for event in events)
    ):
        problems.append(
            problem("webhook_events_filter", f"a list of {', '.join(bodies.WEBHOOK_EVENTS)}")
        )
    elif events is not None and "completed" not in events:
        problems.append(
            problem(
                "webhook_events_filter",
                "this server sends the `completed` event only: include it (or leave the "
                "filter out)",
            )
        )
    raw.pop("stream", None)  # every prediction has a stream URL
    unknown = sorted(set(raw) - {"input"})
    problems += [
        problem(name, "unknown field: send the model's input in `input`") for name in unknown
    ]
    try:
        fields = contract_fields(raw.get("input", {}))
    except ApiError as error:
        if not error.problems:
            raise
        nested = [{**p, "loc": ("input", *p["loc"])} for p in error.problems]
        raise invalid_input([*problems, *nested]) from None
    if problems:
        raise invalid_input(problems)
    return fields, webhook


@router.post("/models/{owner}/{name}/predictions", status_code=201)
async def create_prediction(
    request: Request, caller: ReplicateCaller, owner: str, name: str
) -> Response:
    """A prediction of the model `owner/name`: the official models' route."""
    endpoint = replicate_endpoint(caller.state, owner, name)
    return await _create(request, caller, endpoint, await request.body())


@router.post("/predictions", status_code=201)
async def create_version_prediction(request: Request, caller: ReplicateCaller) -> Response:
    """A prediction of a model version (`{version, input}`): the version of a served
    endpoint's prediction, or `owner/name:version`."""
    body = await request.body()
    # Parsing a large body (data: URIs) must not hold up the event loop.
    endpoint = await run_in_threadpool(_version_endpoint, caller.state, body)
    return await _create(request, caller, endpoint, body, True)


def _version_endpoint(state: AppState, body: bytes) -> Endpoint:
    version = json_object(body).get("version")
    if not isinstance(version, str):
        raise invalid_input([problem("version", "required: a served model's version id")])
    model, _, version_id = version.rpartition(":")
    for endpoint in state.endpoints.values():
        if bodies.endpoint_version(endpoint) == version_id and model in ("", endpoint.replicate_id):
            return endpoint
    known = ", ".join(
        f"{endpoint.replicate_id}:{bodies.endpoint_version(endpoint)}"
        for endpoint in state.endpoints.values()
    )
    raise ApiError(404, NOT_FOUND, f"version {version!r} not found; this server serves: {known}")


async def _create(
    request: Request, caller: Caller, endpoint: Endpoint, body: bytes, versioned: bool = False
) -> Response:
    state = caller.state
    wait = submit_options.prefer_wait(request.headers.get("prefer"), bare=BARE_WAIT_SECONDS)
    key = submit_options.idempotency_key(request.headers.get("idempotency-key"))
    fields, webhook = await run_in_threadpool(_request_fields, body, versioned)
    hook = submit_options.webhook_url(webhook, state.settings.fetch_allow, "webhook", "body")
    base = base_url(request, state)
    job = await submit_job(
        state,
        owner=caller.key_id,
        endpoint=endpoint.id,
        fields=fields,
        webhook=hook,
        base=base,
        idempotency_key=key,
        surface=bodies.SURFACE,
    )
    job = dataclasses.replace(job, input=fields)
    headers = {"Idempotent-Replayed": "true"} if job.replayed else {}
    waited_out = False
    if wait:
        headers["Preference-Applied"] = f"wait={wait}"
        finished = await wait_for_end(state, job.id, caller.key_id, wait)
        waited_out = finished is None
        if finished is not None:
            job = dataclasses.replace(finished, input=fields)
    # Off the event loop: the prediction reads and shows the job's input (data: URIs too).
    prediction = await run_in_threadpool(
        functools.partial(bodies.current, state, base, job, waited_out=waited_out)
    )
    return send(prediction, status_code=201, headers=headers)


def _read_prediction(state: AppState, base: str, request_id: str, owner: str) -> bodies.Prediction:
    job = find_job(state, request_id, owner)
    bind_request_id(job.id)
    return bodies.current(state, base, job)


@router.get("/predictions/{prediction_id}")
async def get_prediction(request: Request, caller: ReplicateCaller, prediction_id: str) -> Response:
    state = caller.state
    read = functools.partial(
        _read_prediction, state, base_url(request, state), prediction_id, caller.key_id
    )
    return send(await run_in_threadpool(read))


@router.post("/predictions/{prediction_id}/cancel")
async def cancel_prediction(
    request: Request, caller: ReplicateCaller, prediction_id: str
) -> Response:
    """The prediction after the cancel: `canceled` for one that had not started (or with
    RETOUCH_CANCEL_RUNNING, one that had); otherwise unchanged: it runs to its end."""
    state = caller.state
    job, _ = await cancel_job(state, prediction_id, caller.key_id)
    read = functools.partial(bodies.current, state, base_url(request, state), job)
    return send(await run_in_threadpool(read))


@router.get("/predictions")
async def list_predictions(
    request: Request, caller: ReplicateCaller, cursor: PageCursor = None
) -> Response:
    """This key's predictions, newest first, without their inputs; `next` is the next page."""
    state = caller.state
    before = parse_cursor(cursor)
    base = base_url(request, state)
    page = await store_read(
        state,
        functools.partial(
            state.store.list_jobs, key_id=caller.key_id, limit=PAGE_SIZE, before=before
        ),
    )
    more = f"{base}{bodies.PREFIX}/v1/predictions?cursor={page.next_cursor}"
    return send(
        bodies.PredictionPage(
            results=[bodies.prediction(state, base, job, None) for job in page.jobs],
            next=more if page.next_cursor is not None else None,
            previous=None,
        )
    )


@router.get("/predictions/{prediction_id}/stream")
async def stream_prediction(
    request: Request, caller: ReplicateCaller, prediction_id: str
) -> EventSourceResponse:
    """Replicate's events: `logs` for each new log line, then `output` for each image, or
    `error`, and last `done` (`{"reason": "canceled"}` for a cancelled one)."""
    state = caller.state
    job = await store_read(state, functools.partial(find_job, state, prediction_id, caller.key_id))
    bind_request_id(job.id)
    base = base_url(request, state)
    finish = functools.partial(bodies.current, state, base)

    async def events() -> AsyncIterator[bytes]:
        # Every event has an id: replicate's Python client drops events without one.
        ids = itertools.count(1)

        def event(name: str, data: str) -> bytes:
            return format_sse_event(event=name, data_str=data, id=f"{job.id}:{next(ids)}")

        sent_lines = 0
        followed = follow_job(state, job.id, caller.key_id, finish, logs=True)
        async for snapshot in followed:
            if isinstance(snapshot, str):
                yield format_sse_event(comment=snapshot)
                continue
            for line in (snapshot.lines or [])[sent_lines:]:
                yield event("logs", line.message)
            sent_lines = len(snapshot.lines or [])
            ended = snapshot.final
            if ended is None:
                continue
            outputs = ended.output if isinstance(ended.output, list) else [ended.output]
            for url in outputs:
                if url is not None:
                    yield event("output", url)
            if ended.error is not None:
                yield event("error", ended.error)
            reason = {"canceled": "canceled", "failed": "error"}.get(ended.status)
            done = json.dumps({"reason": reason} if reason else {})
            yield event("done", done)

    return EventSourceResponse(
        events(), headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"}
    )


@router.get("/webhooks/default/secret")
async def get_webhook_secret(caller: ReplicateCaller) -> Response:
    """`{"key": "whsec_…"}`: the secret signing this key's webhooks (the same as
    /v1/webhooks/secret), which `replicate.webhooks.validate` checks them with."""
    try:
        secret = await run_in_threadpool(caller.state.keys.webhook_secret, caller.key_id)
    except KeyError:  # the key was deleted since it authenticated
        raise ApiError(404, NOT_FOUND, "API key not found") from None
    return send(bodies.SigningSecret(key=secret))
