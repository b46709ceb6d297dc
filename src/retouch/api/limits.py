"""Per-key limits on submits: the key's submit rate and its queued jobs (429001 with
Retry-After, naming the limit). The global queue cap stays 503001 (api/requests.py); how
many of a key's jobs run at once is the claim's business (jobs/sql_store.py), never a
refusal: such jobs wait in the queue."""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Any

from retouch.api.dependencies import key_record
from retouch.api.errors import ApiError
from retouch.api.state import AppState
from retouch.auth.keys import KeyRecord
from retouch.contract.errors import RATE_LIMITED as RATE_LIMITED_CODE
from retouch.jobs.models import KeyQueueFull
from retouch.jobs.rate_limits import SubmitRateExceeded
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


async def submit_admission(
    state: AppState, key_id: str
) -> tuple[int | None, Callable[[Any], None] | None]:
    """The key's queue cap, and what counts the submit against its rate in the submit's own
    transaction (SqlJobStore.submit's `admit`; None when the key has no rate): a replay of
    an Idempotency-Key is answered before it runs, and a refused submit counts nothing."""
    record = await key_record(state, key_id)
    rate = submit_rate(state, record)
    admit = functools.partial(state.rates.admit, key_id=key_id, rate=rate) if rate else None
    return queued_cap(state, record), admit


def rate_exceeded(error: SubmitRateExceeded) -> ApiError:
    RATE_LIMITED.labels(limit="rate").inc()
    seconds = max(1, math.ceil(error.retry_after))
    return ApiError(
        429,
        RATE_LIMITED_CODE,
        f"rate limit: this key may submit {error.rate}; retry in {seconds} s (the key's "
        "`--rate`, or RETOUCH_KEY_SUBMIT_RATE)",
        headers={"Retry-After": str(seconds)},
    )


def key_queue_full(error: KeyQueueFull) -> ApiError:
    RATE_LIMITED.labels(limit="queued").inc()
    return ApiError(
        429,
        RATE_LIMITED_CODE,
        f"queued-jobs limit: this key already has {error.limit} jobs queued; retry when some "
        f"have started (the key's `--max-queued`, or RETOUCH_KEY_MAX_QUEUED)",
        headers={"Retry-After": str(QUEUE_RETRY_SECONDS)},
    )
