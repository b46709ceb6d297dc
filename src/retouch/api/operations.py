"""The operations every surface translates onto: validate an input, submit a job, cancel one.
The contract's routes (retouch.api.requests) and the fal and Replicate surfaces
(retouch.api.fal, retouch.api.replicate) call these, so the same validation, limits,
idempotency and webhooks hold whichever protocol a job came through; each surface only
translates names and shapes."""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool

from retouch.api import submit_options
from retouch.api.dependencies import find_job, key_record, request_expired, request_not_found
from retouch.api.errors import ApiError, invalid_input
from retouch.api.limits import key_queue_full, rate_exceeded, submit_admission
from retouch.api.state import AppState
from retouch.contract.bodies import LogEntry
from retouch.contract.errors import IDEMPOTENCY_CONFLICT, INVALID_INPUT, OVERLOADED
from retouch.contract.inputs import INPUT_MODEL
from retouch.contract.sizes import FIXED_RATIOS
from retouch.jobs.models import (
    Idempotency,
    IdempotencyConflict,
    Job,
    KeyQueueFull,
    QueueFull,
)
from retouch.jobs.rate_limits import SubmitRateExceeded
from retouch.log_context import bind_request_id
from retouch.metrics.registry import job_cancelled
from retouch.responses import log_entries

log = logging.getLogger(__name__)


def parse_input(
    body: bytes,
    names: Mapping[str, str] | None = None,
    problems: Sequence[dict[str, Any]] = (),
) -> dict[str, Any]:
    """The contract's validated fields of a JSON body. `names` maps a contract field to the
    name a surface gives it (Replicate's `image_input`): a 422 then names the surface's.
    `problems`: what a surface found wrong with its own forms (pydantic's error shape), named
    in the same 422 as the contract's."""
    try:
        json.loads(body)
    except (ValueError, RecursionError) as error:
        not_json = ApiError(
            422,
            INVALID_INPUT,
            "invalid input: the body is not valid JSON",
            detail=[{"field": "body", "path": [], "message": f"not valid JSON: {error}"}],
        )
        not_json.problems = [
            {"loc": ["body"], "msg": f"not valid JSON: {error}", "type": "json_invalid"}
        ]
        raise not_json from None
    try:
        fields = INPUT_MODEL.model_validate_json(body).model_dump(mode="json")
    except ValidationError as error:
        errors: list[dict[str, Any]] = [dict(e) for e in error.errors()]
        for e in errors:
            loc: tuple[int | str, ...] = tuple(e["loc"])
            if names and loc and loc[0] in names:
                e["loc"] = (names[str(loc[0])], *loc[1:])
        raise invalid_input([*problems, *errors]) from None
    if problems:
        raise invalid_input(list(problems))
    return fields


def json_object(body: bytes) -> dict[str, Any]:
    """A surface's body as a JSON object, or the contract's 422 for one that is not (not
    JSON, an array…), from parse_input. Blocking (a large body takes a while)."""
    try:
        raw = json.loads(body)
    except (ValueError, RecursionError):
        raw = None
    if isinstance(raw, dict):
        return raw
    parse_input(body)
    raise AssertionError("parse_input took a body that is not a JSON object")


def problem(field: str, message: str) -> dict[str, Any]:
    """A bad field of a surface's own form, in pydantic's error shape (see parse_input)."""
    return {"loc": (field,), "msg": message, "type": "value_error"}


# Aspect ratios Google's model offers on fal and Replicate that the contract's size table has
# no size for: refused by name on those surfaces.
UNMADE_RATIOS = ("4:1", "1:4", "8:1", "1:8")


def unmade_ratio(fields: dict[str, Any], auto: str) -> dict[str, Any] | None:
    """The problem of an aspect ratio no engine here makes (removed from `fields`, so that the
    contract's check does not name it again); `auto`: the surface's name for `auto`."""
    if fields.get("aspect_ratio") not in UNMADE_RATIOS:
        return None
    ratio = fields.pop("aspect_ratio")
    return problem(
        "aspect_ratio",
        f"{ratio} is one of the model's ratios that no engine of this server can make: use "
        f"{auto} or one of {', '.join(FIXED_RATIOS)}",
    )


def idempotency_for(
    state: AppState,
    key: str | None,
    endpoint: str,
    fields: dict[str, Any],
    webhook: str | None,
    surface: str | None = None,
) -> Idempotency | None:
    """The idempotency record of a submit that sent a key. Blocking (hashes the input)."""
    if key is None:
        return None
    digest = submit_options.request_hash(endpoint, fields, webhook, state.signer, surface)
    return Idempotency(key, digest)


def job_and_logs(
    state: AppState, request_id: str, owner: str, logs: bool
) -> tuple[Job, list[LogEntry] | None]:
    """The caller's job (404 when there is none, or it expired) and, with `logs`, its log
    lines. Blocking: call it through store_read."""
    job = find_job(state, request_id, owner)
    return job, (log_entries(state.store.logs(job.id)) if logs else None)


async def submit_job(
    state: AppState,
    *,
    owner: str,
    endpoint: str,
    fields: dict[str, Any],
    webhook: str | None,
    base: str,
    idempotency_key: str | None,
    surface: str | None = None,
) -> Job:
    """Store a queued job for validated fields, within the server's and the key's limits;
    the refusals are ApiErrors (503001, 429001, 409001) each surface answers in its form."""
    idempotency = None
    if idempotency_key is not None:
        # Hashing a large input (data: URIs) must not hold up the event loop.
        idempotency = await run_in_threadpool(
            idempotency_for, state, idempotency_key, endpoint, fields, webhook, surface
        )
    queue_cap, admit = await submit_admission(state, owner)
    try:
        job = await run_in_threadpool(
            functools.partial(
                state.store.submit,
                key_id=owner,
                endpoint=endpoint,
                input=fields,
                max_queued=state.settings.max_queued_jobs,
                key_max_queued=queue_cap,
                webhook_url=webhook,
                base_url=base,
                idempotency=idempotency,
                admit=admit,
                surface=surface,
            )
        )
    except (QueueFull, KeyQueueFull, IdempotencyConflict, SubmitRateExceeded) as refused:
        raise _refusal(refused, idempotency_key) from None
    bind_request_id(job.id)
    return job


def _refusal(refused: Exception, key: str | None) -> ApiError:
    """The answer to a submit the store refused."""
    if isinstance(refused, SubmitRateExceeded):
        return rate_exceeded(refused)
    if isinstance(refused, KeyQueueFull):
        return key_queue_full(refused)
    if isinstance(refused, IdempotencyConflict):
        return ApiError(
            409,
            IDEMPOTENCY_CONFLICT,
            f"Idempotency-Key {key!r} was used in the last 24 h for a different request "
            f"({refused.job_id}): send exactly the same body to get that request back, or "
            "use a new key for a new request",
        )
    return ApiError(
        503,
        OVERLOADED,
        "the queue is full: retry after a few seconds",
        headers={"Retry-After": "5"},
    )


async def cancel_job(state: AppState, request_id: str, owner: str) -> tuple[Job, bool]:
    """Cancel the caller's job if it may be cancelled now (a queued one; a running one too
    with RETOUCH_CANCEL_RUNNING; an admin key cancels any key's): the job after the call,
    and whether this call cancelled it. 404 for no such job, or an expired one."""
    found = await run_in_threadpool(
        state.store.cancel,
        request_id,
        key_id=owner,
        running_too=state.settings.cancel_running,
        any_key=(await key_record(state, owner)).is_admin,
    )
    if found is None:
        raise request_not_found(request_id)
    job, cancelled_now = found
    if job.expired_at is not None:  # never cancelled now: retention only takes ended jobs
        raise await run_in_threadpool(request_expired, state, job)
    bind_request_id(job.id)
    if cancelled_now:
        job_cancelled(job.endpoint)
    if cancelled_now and job.attempts > 0:
        # An earlier attempt was killed after storing files (or, with cancel_running, the
        # running one is stopping): no attempt will finish now, so they are no one's outcome.
        try:
            await run_in_threadpool(state.storage.delete_request, job.id)
        except Exception:  # the job is cancelled all the same
            log.exception("could not remove the files of cancelled request %s", job.id)
    return job, cancelled_now
