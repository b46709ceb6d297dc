"""Per-key limits on submits: the key's submit rate and its queued jobs (429001 with
Retry-After, naming the limit). The global queue cap stays 503001 (api/requests.py); how
many of a key's jobs run at once is the claim's business (jobs/sql_store.py), never a
refusal: such jobs wait in the queue."""

from __future__ import annotations

import functools
import math

from starlette.concurrency import run_in_threadpool

from retouch.api.dependencies import key_record
from retouch.api.errors import ApiError
from retouch.api.state import AppState
from retouch.auth.keys import KeyRecord
from retouch.contract.errors import RATE_LIMITED as RATE_LIMITED_CODE
from retouch.jobs.models import KeyQueueFull
from retouch.metrics.registry import RATE_LIMITED

# Once a key's queue is full, a slot frees when one of its jobs starts: a few seconds.
QUEUE_RETRY_SECONDS = 5


def submit_rate(state: AppState, record: KeyRecord) -> str:
    """The key's submit rate ("" for none): its own, else the server's default."""
    return record.limits.submit_rate or state.settings.key_submit_rate


def queued_cap(state: AppState, record: KeyRecord) -> int | None:
    """How many jobs the key may have queued (None: only the global cap)."""
    own = record.limits.max_queued
    return own if own is not None else (state.settings.key_max_queued or None)


async def admit_submit(state: AppState, key_id: str) -> int | None:
    """Count this submit against the key's rate: 429001 when over it. Returns the key's own
    queue cap, for the store's submit (which refuses past it with KeyQueueFull)."""
    record = await key_record(state, key_id)
    rate = submit_rate(state, record)
    if rate:
        wait = await run_in_threadpool(functools.partial(state.rates.hit, key_id, rate))
        if wait is not None:
            RATE_LIMITED.labels(limit="rate").inc()
            seconds = max(1, math.ceil(wait))
            raise ApiError(
                429,
                RATE_LIMITED_CODE,
                f"rate limit: this key may submit {rate}; retry in {seconds} s (the key's "
                "`--rate`, or RETOUCH_KEY_SUBMIT_RATE)",
                headers={"Retry-After": str(seconds)},
            )
    return queued_cap(state, record)


def key_queue_full(error: KeyQueueFull) -> ApiError:
    RATE_LIMITED.labels(limit="queued").inc()
    return ApiError(
        429,
        RATE_LIMITED_CODE,
        f"queued-jobs limit: this key already has {error.limit} jobs queued; retry when some "
        f"have started (the key's `--max-queued`, or RETOUCH_KEY_MAX_QUEUED)",
        headers={"Retry-After": str(QUEUE_RETRY_SECONDS)},
    )
