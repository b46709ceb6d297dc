"""The webhook dispatcher: an asyncio task in each API process that sends due deliveries.

Deliveries live in the job store (written in the transaction that ends a job), so they survive
restarts: the dispatcher only ever holds a short lease on the ones it is sending. When idle it
reads when the next delivery is due a few times a second, and takes no write lock."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Final, TypeVar

from retouch.auth.keys import KeyStore
from retouch.config import Settings
from retouch.jobs.models import Delivery, DeliveryAttempt, Job
from retouch.jobs.outage import Backoff, OutageLog, is_unavailable, until_answered
from retouch.jobs.store import WebhookStore
from retouch.metrics.registry import WEBHOOK_DELIVERIES
from retouch.responses import ResponseBuilder
from retouch.webhooks.backoff import RetrySchedule
from retouch.webhooks.sender import Outcome, WebhookSender
from retouch.webhooks.signing import message_id, signed_headers

log = logging.getLogger(__name__)
T = TypeVar("T")

# How often an idle dispatcher reads when the next delivery is due (a read, no write lock;
# deliveries being sent count as due only when their lease ends).
POLL_SECONDS: Final = 0.25
# A lease outlives the attempt's own timeout by this much (building the body, recording it).
LEASE_MARGIN_SECONDS: Final = 30.0
# At shutdown, attempts in flight get this long to finish; the rest are recorded as
# interrupted and retried at once by the next start.
STOP_GRACE_SECONDS: Final = 3.0
INTERRUPTED: Final = "interrupted: the server stopped during the attempt"
DATABASE_DOWN: Final = "could not read the request: the job database does not answer"


def schedule_from(settings: Settings) -> RetrySchedule:
    return RetrySchedule(
        first=settings.webhook_first_retry_seconds,
        factor=settings.webhook_retry_factor,
        maximum=settings.webhook_max_retry_interval_seconds,
    )


class WebhookDispatcher:
    def __init__(
        self,
        *,
        store: WebhookStore,
        keys: KeyStore,
        responses: ResponseBuilder,
        settings: Settings,
        clock: Callable[[], float] = time.time,
        body_of: Callable[[str, Job], str] | None = None,
    ) -> None:
        """`body_of(base, job)`: the body to POST for an ended job (by default its result body;
        the API passes one that keeps the shape of the surface the job came through). It may
        read the store: it runs on the dispatcher's database threads."""
        self.store = store
        self.body_of = body_of or (lambda base, job: responses.result(base, job).to_json().decode())
        self.keys = keys
        self.responses = responses
        self.sender = WebhookSender(settings.fetch_allow, settings.webhook_timeout_seconds)
        self.schedule = schedule_from(settings)
        self.concurrency = settings.webhook_concurrency
        self.lease_seconds = settings.webhook_timeout_seconds + LEASE_MARGIN_SECONDS
        # Jobs submitted before base URLs were stored have none: use the configured one.
        self.fallback_base = (settings.public_base_url or settings.listen_url).rstrip("/")
        self.clock = clock
        self._in_flight: set[asyncio.Task[None]] = set()
        self._wake = asyncio.Event()
        self._stopping = False
        self._task: asyncio.Task[None] | None = None
        self._db_threads = ThreadPoolExecutor(max_workers=2, thread_name_prefix="webhook-db")
        self.outage = OutageLog(log, "webhook dispatcher")
        # Apart: on SQLite the loop's reads go on while a writer holds the lock that keeps
        # attempts from being recorded, and one log would flap between down and up.
        self.recording_outage = OutageLog(log, "webhook dispatcher, recording an attempt")

    async def _in_db_thread(self, call: Callable[[], T]) -> T:
        """Database calls run on threads of their own: the default executor also runs DNS
        lookups (getaddrinfo), and a receiver's stuck name server must not hold them up."""
        return await asyncio.get_running_loop().run_in_executor(self._db_threads, call)

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="webhook-dispatcher")

    async def stop(self, grace: float = STOP_GRACE_SECONDS) -> None:
        """Stop claiming, let attempts in flight finish for up to `grace` seconds, then cancel
        the rest (each is recorded as interrupted, releasing its lease)."""
        self._stopping = True
        self._wake.set()
        if self._task is not None:
            await self._task
        if self._in_flight:
            _, late = await asyncio.wait(set(self._in_flight), timeout=grace)
            for task in late:
                task.cancel()
            await asyncio.gather(*late, return_exceptions=True)
        self._db_threads.shutdown(wait=False)

    # --- the loop -----------------------------------------------------------------------------

    async def _run(self) -> None:
        backoff = Backoff()
        while not self._stopping:
            try:
                claimed = await self._claim_due()
            except Exception as error:
                # A locked or unreachable database must not end webhooks for good: tried again
                # within a second, with one warning for the whole outage.
                if not is_unavailable(error):
                    log.exception("webhook dispatcher: could not read the deliveries")
                    await self._sleep(POLL_SECONDS)
                else:
                    self.outage.failed(error)
                    await self._sleep(backoff.next())
                continue
            self.outage.recovered()
            backoff.reset()
            if claimed == 0:
                await self._sleep(POLL_SECONDS)

    async def _claim_due(self) -> int:
        """Start sending what is due, as far as free slots allow; how many were started."""
        free = self.concurrency - len(self._in_flight)
        if free <= 0:
            return 0
        due = await self._in_db_thread(self.store.next_delivery_at)
        if due is None or due > self.clock():
            return 0
        deliveries = await self._in_db_thread(
            functools.partial(
                self.store.claim_deliveries, limit=free, lease_seconds=self.lease_seconds
            )
        )
        for delivery in deliveries:
            task = asyncio.create_task(self._deliver(delivery), name=f"webhook-{delivery.job_id}")
            self._in_flight.add(task)
            task.add_done_callback(self._finished)
        return len(deliveries)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._in_flight.discard(task)
        # A slot is free and the delivery's row has moved on: look again without waiting.
        self._wake.set()

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), seconds)
        self._wake.clear()

    # --- one delivery -------------------------------------------------------------------------

    async def _deliver(self, delivery: Delivery) -> None:
        started_at, started = self.clock(), time.monotonic()
        try:
            outcome = await self._attempt(delivery)
        except asyncio.CancelledError:
            # Recorded here and now (the loop is shutting down): the lease is released and the
            # next start sends it again at once instead of waiting for the lease to end.
            self._record(delivery, started_at, started, Outcome(error=INTERRUPTED), retry_now=True)
            raise
        except Exception as error:
            if is_unavailable(error):
                self.outage.failed(error)
                outcome = Outcome(error=DATABASE_DOWN)
            else:
                log.exception("webhook for request %s: attempt failed", delivery.job_id)
                outcome = Outcome(
                    error=f"internal error while sending ({error.__class__.__name__})"
                )
        await self._in_db_thread(
            functools.partial(self._record, delivery, started_at, started, outcome)
        )

    async def _attempt(self, delivery: Delivery) -> Outcome:
        job = await self._in_db_thread(
            functools.partial(self.store.get, delivery.job_id, key_id=delivery.key_id)
        )
        if job is None:
            return Outcome(error="the request no longer exists", final=True)
        secret = await self._in_db_thread(
            functools.partial(self.keys.webhook_secret, delivery.key_id)
        )
        # Built now, not when the job ended: the output URLs are signed fresh for each attempt.
        body = await self._in_db_thread(
            functools.partial(self.body_of, job.base_url or self.fallback_base, job)
        )
        headers = signed_headers(secret, message_id(job.id), body, self.clock())
        return await self.sender.send(delivery.url, body, headers)

    def _record(
        self,
        delivery: Delivery,
        started_at: float,
        started: float,
        outcome: Outcome,
        *,
        retry_now: bool = False,
    ) -> None:
        retry_at = None if outcome.delivered or outcome.final else self._retry_at(delivery, outcome)
        if retry_now:
            retry_at = self.clock()
        attempt = DeliveryAttempt(
            at=started_at,
            status_code=outcome.status_code,
            error=outcome.error,
            duration_ms=(time.monotonic() - started) * 1000,
        )
        record = functools.partial(
            self.store.record_delivery_attempt,
            delivery,
            attempt,
            delivered=outcome.delivered,
            retry_at=retry_at,
        )
        try:
            # While the database is down, retried: once the lease has ended the attempt decides
            # nothing, and a stopping dispatcher must not wait.
            until_answered(
                record,
                self.recording_outage,
                give_up=lambda: self._stopping or self.clock() >= delivery.lease_expires_at,
            )
        except Exception as error:
            # Unrecorded, the delivery stays leased; it is sent again once the lease ends.
            if is_unavailable(error):
                log.warning(
                    "webhook for request %s: attempt not recorded (the job database does not "
                    "answer); it is sent again once its lease ends",
                    delivery.job_id,
                )
            else:
                log.exception(
                    "webhook for request %s: could not record the attempt", delivery.job_id
                )
            return
        self._log(delivery, outcome, retry_at)

    def _retry_at(self, delivery: Delivery, outcome: Outcome) -> float:
        pause = self.schedule.delay(delivery.attempts + 1)
        if outcome.retry_after is not None:
            # The receiver's own Retry-After, if longer, within our longest pause.
            pause = max(pause, min(outcome.retry_after, self.schedule.maximum))
        return self.clock() + pause

    def _log(self, delivery: Delivery, outcome: Outcome, retry_at: float | None) -> None:
        name = f"webhook for request {delivery.job_id} (attempt {delivery.attempts + 1})"
        if outcome.delivered:
            WEBHOOK_DELIVERIES.labels(outcome="delivered").inc()
            log.info("%s delivered: HTTP %s", name, outcome.status_code)
        elif retry_at is not None and retry_at <= delivery.give_up_at:
            WEBHOOK_DELIVERIES.labels(outcome="retrying").inc()
            wait = max(0.0, retry_at - self.clock())
            log.warning("%s failed: %s; next attempt in %.3g s", name, outcome.error, wait)
        else:
            WEBHOOK_DELIVERIES.labels(outcome="failed").inc()
            log.warning("%s failed for good: %s", name, outcome.error)
