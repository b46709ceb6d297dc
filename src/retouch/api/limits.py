"""Per-key limits on submits: the key's submit rate and its queued jobs (429001 with
Retry-After, naming the limit). The global queue cap stays 503001 (api/requests.py); how
many of a key's jobs run at once is the claim's business (jobs/sql_store.py), never a
refusal: such jobs wait in the queue."""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

from starlette.concurrency import run_in_threadpool

from retouch.api.dependencies import key_record, store_read
from retouch.api.errors import ApiError
from retouch.api.state import AppState
from retouch.auth.keys import KeyRecord
from retouch.contract.errors import RATE_LIMITED as RATE_LIMITED_CODE
from retouch.jobs.models import Idempotency, KeyQueueFull
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


@dataclass(frozen=True)
class Admission:
    """A submit let through the key's rate: the key's queue cap for the store's submit, and
    the rate it was counted against ("" when it was not counted)."""

    key_id: str
    queue_cap: int | None
    counted_rate: str = ""

    async def give_back(self, state: AppState) -> None:
        """The submit made no job (a queue cap refused it, or it was a replay): uncount it."""
        if self.counted_rate:
            rates = state.rates
            await run_in_threadpool(rates.give_back, self.key_id, self.counted_rate)


async def admit_submit(state: AppState, key_id: str, idempotency: Idempotency | None) -> Admission:
    """Count this submit against the key's rate: 429001 when over it. A retry that an
    Idempotency-Key makes a replay of an earlier submit is not counted (its answer is the
    earlier job's, whatever the rate)."""
    record = await key_record(state, key_id)
    cap = queued_cap(state, record)
    rate = submit_rate(state, record)
    if not rate:
        return Admission(key_id, cap)
    if idempotency is not None:
        replay = functools.partial(state.store.replay, key_id, idempotency)
        if await store_read(state, replay) is not None:
            return Admission(key_id, cap)
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
    return Admission(key_id, cap, rate)


def key_queue_full(error: KeyQueueFull) -> ApiError:
    RATE_LIMITED.labels(limit="queued").inc()
    return ApiError(
        429,
        RATE_LIMITED_CODE,
        f"queued-jobs limit: this key already has {error.limit} jobs queued; retry when some "
        f"have started (the key's `--max-queued`, or RETOUCH_KEY_MAX_QUEUED)",
        headers={"Retry-After": str(QUEUE_RETRY_SECONDS)},
    )
