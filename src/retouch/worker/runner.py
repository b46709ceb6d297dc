"""The worker loop: claim a job, hold its lease while it runs, report its progress, finish it
exactly once."""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import queue
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from PIL import Image

from retouch.config import Settings
from retouch.engine.base import EditCancelled, Engine
from retouch.engine.upscale import Upscaler
from retouch.jobs.models import Claim, StoredResult
from retouch.jobs.outage import Backoff, OutageLog, is_unavailable, until_answered
from retouch.jobs.store import ClaimStore, WorkerStore
from retouch.log_context import request_id_bound
from retouch.media.fetch import FetchConfig
from retouch.metrics import registry as metrics
from retouch.safety.moderation import Moderator
from retouch.served_endpoints import Endpoint
from retouch.services import Services
from retouch.storage.base import Storage, is_storage_full
from retouch.storage.signing import UrlSigner
from retouch.worker.edit_job import (
    JobFailure,
    JobTools,
    PreparedEdit,
    finish_edit,
    generate,
    model_info,
    prepare_edit,
    storage_full_failure,
)
from retouch.worker.memory import memory_report

log = logging.getLogger(__name__)

# An idle worker still tries to claim this often, so expired leases get reaped even when no
# other process writes to the database.
IDLE_CLAIM_SECONDS = 1.0
HEARTBEAT_SECONDS = 5.0
# Progress is written at most this often (and at the last step): each write is an fsync.
PROGRESS_WRITE_SECONDS = 0.25
# How often a running job checks that it still holds its lease (cancelled, or reaped).
HOLD_CHECK_SECONDS = 0.25


def fetch_config(settings: Settings) -> FetchConfig:
    return FetchConfig(
        allow=settings.fetch_allow,
        max_bytes=settings.fetch_max_bytes,
        connect_timeout=settings.fetch_connect_timeout,
        read_timeout=settings.fetch_read_timeout,
        total_timeout=settings.fetch_total_timeout,
    )


class LeaseKeeper:
    """Renews a claim's lease in the background and reports the job's progress. `lost` is set
    once the claim no longer holds the job (its lease expired and was reaped, or the client
    cancelled it): its outcome must then be thrown away.

    While the database does not answer, the job runs on: a hold check that cannot be made
    counts as held, a progress write is skipped, and the renewal is retried within a second
    until it gets through (or the lease has run out and been reaped meanwhile: then `lost`)."""

    def __init__(
        self,
        store: ClaimStore,
        claim: Claim,
        lease_seconds: float,
        outage: OutageLog | None = None,
    ) -> None:
        self.store = store
        self.claim = claim
        self.lease_seconds = lease_seconds
        self.outage = outage or OutageLog(log, f"job {claim.job.id}")
        # By our clock, the lease has run out by then unless renewed since: it was taken
        # (or last renewed) before this was set.
        self.expires_by = time.monotonic() + lease_seconds
        self.lost = threading.Event()
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, name="lease-keeper", daemon=True)
        self._last_hold_check = 0.0
        self._last_progress_write = 0.0

    def _run(self) -> None:
        interval = self.lease_seconds / 3
        pause, backoff = interval, Backoff()
        while not self._done.wait(pause):
            try:
                renewed = self.store.renew(self.claim, lease_seconds=self.lease_seconds)
            except Exception as error:
                if is_unavailable(error):
                    self.outage.failed(error)
                else:
                    log.exception("lease renewal failed; retrying")
                # Again soon, not in a third of the lease: it runs out meanwhile.
                pause = min(backoff.next(), interval)
                continue
            self.outage.recovered()
            if not renewed:
                self._mark_lost()
                return
            self.expires_by = time.monotonic() + self.lease_seconds
            pause = interval
            backoff.reset()

    def expired(self) -> bool:
        """Whether the lease has surely run out by now (by our clock)."""
        return time.monotonic() >= self.expires_by

    def _mark_lost(self) -> None:
        if not self.lost.is_set():
            log.warning("job %s: no longer ours (cancelled or reaped)", self.claim.job.id)
            self.lost.set()

    def still_held(self) -> bool:
        """Throttled check against the store, so a cancelled job stops within a step."""
        now = time.monotonic()
        if not self.lost.is_set() and now - self._last_hold_check >= HOLD_CHECK_SECONDS:
            self._last_hold_check = now
            # Unknown counts as held: a lost lease shows up once the database answers.
            check = functools.partial(self.store.is_held, self.claim)
            if not self.outage.answer_or(check, True, shows_recovery=False):
                self._mark_lost()
        return not self.lost.is_set()

    def progress(self, step: int, total: int) -> None:
        now = time.monotonic()
        if step < total and now - self._last_progress_write < PROGRESS_WRITE_SECONDS:
            return
        self._last_progress_write = now
        write = functools.partial(self.store.report_progress, self.claim, step=step, total=total)
        # A progress write that cannot be made is skipped: the next one says where the job is.
        if not self.outage.answer_or(write, True):
            self._mark_lost()

    def __enter__(self) -> LeaseKeeper:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()

    def stop(self) -> None:
        """Renew no more (before finishing the job: a renewal after it would find the job no
        longer ours). Idempotent."""
        self._done.set()
        if self._thread.is_alive():
            self._thread.join()


class ClaimReporter:
    """A running job's reporter: progress and log lines go to the store; it is to stop when
    the worker gives its job back (see Worker.drain) or the claim is lost."""

    def __init__(self, store: ClaimStore, lease: LeaseKeeper, stopping: threading.Event) -> None:
        self.store = store
        self.lease = lease
        self.stopping = stopping

    def on_step(self, step: int, total: int) -> None:
        self.lease.progress(step, total)

    def log(self, message: str, level: str = "info") -> None:
        """A line in the job's log; lost if the database does not answer (the job goes on)."""
        add = functools.partial(
            self.store.add_log, self.lease.claim.job.id, level=level, message=message
        )
        self.lease.outage.answer_or(add, None)

    def should_cancel(self) -> bool:
        return self.stopping.is_set() or not self.lease.still_held()


class ResidentEngines:
    """One resident engine per endpoint, loaded on the endpoint's first job."""

    def __init__(self, load: Callable[[Endpoint], Engine]) -> None:
        self._load = load
        self.engines: dict[str, Engine] = {}

    def get(self, endpoint: Endpoint) -> Engine:
        if endpoint.id not in self.engines:
            log.info(
                "loading %s (%s) for %s", endpoint.engine, endpoint.model or "preview", endpoint.id
            )
            self.engines[endpoint.id] = self._load(endpoint)
            log.info("memory after loading: %s", memory_report())
        return self.engines[endpoint.id]


def loaded_engines(settings: Settings, endpoints: list[Endpoint]) -> ResidentEngines:
    """Every served endpoint's engine, loaded now, as `retouch worker` starts: the first
    request does not pay for it, and a broken model fails at start, not on a user's job."""
    from retouch.engine.registry import load_engine

    def load(served: Endpoint) -> Engine:
        return load_engine(
            served.engine, served.model, models_dir=settings.models_dir, options=served.options
        )

    engines = ResidentEngines(load)
    for served in endpoints:
        engines.get(served)
    return engines


class Worker:
    def __init__(
        self,
        settings: Settings,
        store: WorkerStore,
        storage: Storage,
        signer: UrlSigner,
        endpoints: list[Endpoint],
        engines: ResidentEngines,
        upscaler: Upscaler,
        moderator: Moderator,
    ) -> None:
        self.settings = settings
        self.store = store
        self.storage = storage
        self.signer = signer
        self.endpoints = {endpoint.id: endpoint for endpoint in endpoints}
        self.engines = engines
        self.upscaler = upscaler
        self.moderator = moderator
        self.worker_id = f"{socket.gethostname()}:{os.getpid()}"
        # Set: claim no more jobs. `releasing` set too: the running job stops at its next
        # step and goes back to the queue. `stop()` sets both; a signal drains (`drain`).
        self.stopping = threading.Event()
        self.releasing = threading.Event()
        self._stopped = threading.Event()  # run_forever's loop has ended: no more heartbeats
        self.exited = threading.Event()  # run_forever has returned
        self._drain_requests: queue.SimpleQueue[None] = queue.SimpleQueue()
        self.current_job: str | None = None
        # One warning per database outage for the whole worker, one line when it is over.
        self.outage = OutageLog(log, f"worker {self.worker_id}")
        self._fetch_config = fetch_config(settings)
        self._heartbeat = threading.Thread(target=self._beat, name="heartbeat", daemon=True)

    def stop(self) -> None:
        """Stop after the current step: a running job goes back to the queue."""
        self.stopping.set()
        self.releasing.set()

    def signalled(self) -> None:
        """SIGTERM or SIGINT: the first drains (see `drain`), a second during the drain
        releases the running job at once. Safe in a signal handler (SimpleQueue.put is
        reentrant); the drain thread started by run_forever does the rest."""
        self._drain_requests.put(None)

    def drain(self, seconds: float) -> None:
        """Claim no more jobs; let the running job finish if it does within `seconds`, else
        stop it at its next step and put it back in the queue (its attempt not counted). A
        second request (`signalled`) meanwhile puts it back at once. run_forever runs this in
        a thread of its own, which waits for the first request."""
        self._drain_requests.get()
        if self._stopped.is_set():
            return  # run_forever has returned (its last act wakes this thread)
        self.stopping.set()
        job = self.current_job
        if job is None:
            log.info("draining: no job running; stopping")
        else:
            log.info("draining: finishing job %s (up to %g s)", job, seconds)
        deadline = time.monotonic() + seconds
        while not self._stopped.is_set():
            try:
                self._drain_requests.get(timeout=min(max(deadline - time.monotonic(), 0), 0.25))
            except queue.Empty:
                if time.monotonic() < deadline:
                    continue
                if self.current_job is not None:
                    log.info(
                        "draining: job %s still running after %g s; it goes back to the queue "
                        "at its next step",
                        self.current_job,
                        seconds,
                    )
            else:
                if self._stopped.is_set():
                    return
                log.info(
                    "second stop signal: job %s goes back to the queue at its next step",
                    self.current_job or "-",
                )
            self.releasing.set()
            return

    def health(self) -> dict[str, Any]:
        return {
            "endpoints": list(self.endpoints),
            "engines": {
                endpoint: model_info(engine).model_dump()
                for endpoint, engine in self.engines.engines.items()
            },
            "upscaler": self.upscaler.name,
            "nsfw_classifier": self.moderator.classifier.name,
            "current_job": self.current_job,
            "memory": memory_report(),
        }

    def _beat(self) -> None:
        # Beats on while draining: the worker still runs its job.
        while not self._stopped.wait(HEARTBEAT_SECONDS):
            try:
                self._heartbeat_now()
            except Exception:
                log.exception("heartbeat failed")

    def _heartbeat_now(self) -> None:
        """One heartbeat; skipped while the database does not answer (the next one is due in
        HEARTBEAT_SECONDS, well within the workers list's 30 s)."""
        info = self.health()
        self.outage.answer_or(
            functools.partial(self.store.heartbeat, self.worker_id, info=info), None
        )

    def run_forever(self) -> None:
        self._heartbeat_now()
        log.info(
            "worker %s ready for %s; memory %s",
            self.worker_id,
            ", ".join(self.endpoints),
            memory_report(),
        )
        self._heartbeat.start()
        threading.Thread(
            target=self.drain, args=(self.settings.drain_seconds,), name="drain", daemon=True
        ).start()
        backoff = Backoff()
        try:
            while not self.stopping.is_set():
                # Taken before claiming, so a submit committed while the claim finds the queue
                # empty still wakes the wait below at once.
                token = self.store.change_token()
                try:
                    claimed = self.run_once()
                except Exception as error:
                    if not is_unavailable(error):
                        raise
                    self.outage.failed(error)
                    self.stopping.wait(backoff.next())
                    continue
                backoff.reset()
                if not claimed:
                    # Wake on any commit by another connection (a submit) or after a second.
                    self.store.wait_for_change(IDLE_CLAIM_SECONDS, since=token)
        finally:
            self._stopped.set()
            self._drain_requests.put(None)  # ends the drain thread
            self._heartbeat.join(HEARTBEAT_SECONDS)  # its last beat lands before the removal
            self.outage.answer_or(functools.partial(self.store.remove_worker, self.worker_id), None)
            self.exited.set()
        log.info("worker %s stopped", self.worker_id)

    def run_once(self) -> bool:
        """Claim and run one job (the claim reaps expired leases when due). False when the
        queue was empty. Raises the database's error when it does not answer (run_forever
        backs off)."""
        claim = self.store.claim(
            worker_id=self.worker_id,
            lease_seconds=self.settings.lease_seconds,
            endpoints=list(self.endpoints),
            given_up=self._remove_lost_files,
        )
        self.outage.recovered()
        if claim is None:
            return False
        claims = [claim, *self._claim_more(claim)]
        self.current_job = claim.job.id
        try:
            self.run_claims(claims)
        finally:
            self.current_job = None
        return True

    def _claim_more(self, first: Claim) -> list[Claim]:
        """Up to the endpoint's batch_max - 1 more queued jobs of the first one's endpoint, in
        the fair order, to run with it as one batch. Fewer when the queue has fewer, and none
        when the database stops answering: the jobs claimed so far run anyway."""
        endpoint = first.job.endpoint
        more: list[Claim] = []
        while len(more) + 1 < self.endpoints[endpoint].options.batch_max:
            if self.stopping.is_set():
                break
            try:
                claim = self.store.claim(
                    worker_id=self.worker_id,
                    lease_seconds=self.settings.lease_seconds,
                    endpoints=[endpoint],
                    reap=False,
                )
            except Exception as error:
                if not is_unavailable(error):
                    raise
                self.outage.failed(error)
                break
            if claim is None:
                break
            more.append(claim)
        return more

    def _remove_lost_files(self, given_up: tuple[str, ...]) -> None:
        """Remove the files of the jobs the reaper gave up (worker_lost): their attempts
        stored them, none will finish."""
        for job_id in given_up:
            metrics.job_failed("", "worker_lost")  # its endpoint is not read
            try:
                self.storage.delete_request(job_id)
            except Exception:  # the storage's problem must not stop this worker's claims
                log.exception("job %s: could not remove the files of its lost attempts", job_id)

    def _finish(self, lease: LeaseKeeper, write: Callable[[], bool]) -> bool:
        """write() (complete, fail or release) once the database answers: whether this claim
        still held the job (the fencing decides, as ever). A stopping worker gives up once
        its lease has run out: the reaper puts the job back in the queue then anyway."""
        return until_answered(
            write, lease.outage, give_up=lambda: self.stopping.is_set() and lease.expired()
        )

    def _fail(self, reporter: ClaimReporter, code: str, message: str) -> None:
        claim = reporter.lease.claim
        # The line before the state: whoever reads the job failed (a `Prefer: wait` answer, a
        # webhook, Replicate's logs) reads why. It is true of this attempt even if the claim
        # was lost meanwhile and another attempt runs the job.
        reporter.log(f"failed: {message}", level="error")
        write = functools.partial(self.store.fail, claim, code=code, message=message)
        if self._finish(reporter.lease, write):
            metrics.job_failed(claim.job.endpoint, code)
            # Files left by an earlier attempt that died mid-way are no one's outcome now.
            self.storage.delete_request(claim.job.id)

    def run_claim(self, claim: Claim) -> None:
        self.run_claims([claim])

    def run_claims(self, claims: list[Claim]) -> None:
        """Run claimed jobs of one endpoint: each prepared on its own, the engine's run of all
        of them together (one batched call where their sizes line up), then each finished on
        its own. Each job ends on its own too: one's failure, cancellation or lost lease is
        not its neighbours'."""
        endpoint = self.endpoints[claims[0].job.endpoint]
        tools = JobTools(
            engine=self.engines.get(endpoint),
            storage=self.storage,
            signer=self.signer,
            fetch_config=self._fetch_config,
            max_input_pixels=self.settings.max_input_pixels,
            max_request_pixels=self.settings.max_request_pixels,
            upscaler=self.upscaler,
            moderator=self.moderator,
        )
        with contextlib.ExitStack() as leases:
            attempts = [
                _Attempt(
                    claim,
                    lease := leases.enter_context(
                        LeaseKeeper(self.store, claim, self.settings.lease_seconds, self.outage)
                    ),
                    ClaimReporter(self.store, lease, self.releasing),
                )
                for claim in claims
            ]
            for attempt in attempts:
                self._step(attempt, functools.partial(self._prepare, attempt, tools))
            ready = [attempt for attempt in attempts if attempt.edit is not None]
            if ready:
                self._generate(ready, tools)
            for attempt in ready:
                if attempt.generated is not None:
                    self._step(attempt, functools.partial(self._finish_edit, attempt, tools))
                if attempt.result is not None:
                    attempt.lease.stop()
                    with request_id_bound(attempt.claim.job.id):
                        self._complete(attempt)

    def _prepare(self, attempt: _Attempt, tools: JobTools) -> None:
        job = attempt.claim.job
        log.info("job %s: started (attempt %d)", job.id, job.attempts)
        if job.attempts > 1:
            # Files of earlier attempts that died after storing them are no one's outcome: a
            # job cancelled or failed in this attempt must not keep them. (A lost attempt
            # still running somewhere deletes its own files when it cannot complete.)
            self.storage.delete_request(job.id)
        assert job.input is not None  # a claim loads the whole row
        attempt.edit = prepare_edit(input=job.input, tools=tools, reporter=attempt.reporter)
        if attempt.reporter.should_cancel():
            raise EditCancelled()

    def _generate(self, attempts: list[_Attempt], tools: JobTools) -> None:
        """The engine's run of every prepared job; it stops when the worker gives its jobs back
        or none of them is still ours."""

        def on_step(step: int, total: int) -> None:
            for attempt in attempts:
                attempt.reporter.on_step(step, total)

        def should_cancel() -> bool:
            # Every lease is checked (each check is throttled), so each notices its loss.
            held = [attempt.lease.still_held() for attempt in attempts]
            return self.releasing.is_set() or not any(held)

        if len(attempts) > 1:
            log.info(
                "running %d jobs as one batch: %s",
                len(attempts),
                ", ".join(attempt.claim.job.id for attempt in attempts),
            )
            for attempt in attempts:
                attempt.reporter.log(f"running in a batch of {len(attempts)} jobs")
        edits = [attempt.edit for attempt in attempts if attempt.edit is not None]
        try:
            outcomes = generate(tools.engine, edits, on_step, should_cancel)
        except Exception as error:  # EditCancelled, or a bug: each job ends by it
            for attempt in attempts:
                self._step(attempt, functools.partial(_raise, error))
            return
        for attempt, outcome in zip(attempts, outcomes, strict=True):
            if isinstance(outcome, JobFailure):
                self._step(attempt, functools.partial(_raise, outcome))
            elif attempt.lease.lost.is_set():
                # Cancelled or taken over while its batch ran: its images are no one's.
                self._step(attempt, functools.partial(_raise, EditCancelled()))
            else:
                attempt.generated = outcome

    def _finish_edit(self, attempt: _Attempt, tools: JobTools) -> None:
        assert attempt.edit is not None and attempt.generated is not None
        attempt.result = finish_edit(
            job_id=attempt.claim.job.id,
            attempt_tag=attempt.claim.lease_token[:8],
            edit=attempt.edit,
            generated=attempt.generated,
            tools=tools,
            reporter=attempt.reporter,
        )

    def _step(self, attempt: _Attempt, action: Callable[[], None]) -> None:
        """One stage of one job, under its request id: on an exception the job ends here
        (released to the queue, failed, or let go when it is no longer ours), and it takes no
        further stage."""
        claim, reporter, lease = attempt.claim, attempt.reporter, attempt.lease
        job = claim.job
        with request_id_bound(job.id):
            try:
                action()
                return
            except EditCancelled:
                if lease.lost.is_set():
                    log.info("job %s: stopped (cancelled or taken over)", job.id)
                elif self._finish(lease, functools.partial(self.store.release, claim)):
                    reporter.log("put back in the queue: its worker is shutting down")
                    log.info("job %s: put back in the queue (worker stopping)", job.id)
            except JobFailure as failure:
                self._fail(reporter, failure.code, failure.message)
                log.info("job %s: failed: %s", job.id, failure.message)
            except Exception as error:
                if is_storage_full(error):  # a full disk met outside storing the outputs
                    full = storage_full_failure(error)
                    log.error("job %s: failed: %s", job.id, full.message)
                    self._fail(reporter, full.code, full.message)
                else:
                    log.exception("job %s: internal error", job.id)
                    self._fail(
                        reporter,
                        "internal_error",
                        f"internal error ({type(error).__name__}); the operator's log has the "
                        "details. Submitting again may work.",
                    )
            attempt.edit = attempt.generated = attempt.result = None

    def _complete(self, attempt: _Attempt) -> None:
        claim, reporter, lease, result = (
            attempt.claim,
            attempt.reporter,
            attempt.lease,
            attempt.result,
        )
        assert result is not None
        job = claim.job
        result.timings["job_s"] = round(time.perf_counter() - attempt.started, 4)
        files = [output.file for output in result.outputs]
        complete = functools.partial(self.store.complete, claim, result=result.as_json_dict())
        try:
            completed = self._finish(lease, complete)
        except Exception as error:
            if not is_storage_full(error):
                raise
            # The job database's disk is full: the outputs are no one's, and the job fails
            # if that write still fits (else its lease runs out and it is tried again).
            for name in files:
                self.storage.delete(name)
            full = storage_full_failure(error)
            log.error("job %s: could not finish: %s", job.id, full.message)
            try:
                self._fail(reporter, full.code, full.message)
            except Exception as again:
                if not is_storage_full(again):
                    raise
            return
        if not completed:
            # Cancelled, or taken over by another worker after our lease expired: the
            # files of this attempt are not the job's outcome.
            for name in files:
                self.storage.delete(name)
            log.warning("job %s: finished after losing the claim; discarded", job.id)
            return
        self.storage.keep_only(job.id, files)
        metrics.job_succeeded(job.endpoint, result.timings)
        log.info("job %s: succeeded in %.2f s", job.id, time.perf_counter() - attempt.started)


@dataclass
class _Attempt:
    """One claimed job on its way through a worker's run: what its stages have made so far."""

    claim: Claim
    lease: LeaseKeeper
    reporter: ClaimReporter
    started: float = field(default_factory=time.perf_counter)
    edit: PreparedEdit | None = None
    generated: list[Image.Image] | None = None
    result: StoredResult | None = None


def _raise(error: BaseException) -> None:
    """As a stage: ends the job as `error` says (see Worker._step)."""
    raise error


def build_worker(
    settings: Settings, services: Services, endpoints: list[Endpoint], engines: ResidentEngines
) -> Worker:
    """A worker on a data dir's services, as `retouch worker` runs it: the upscaler, the NSFW
    classifier and the prompt lexicon are loaded now, once, not in the first job."""
    from retouch.engine.upscale import load_upscaler
    from retouch.safety.images import load_classifier
    from retouch.safety.prompt import scan_prompt

    upscaler = load_upscaler(settings.upscaler, device=settings.device)
    moderator = Moderator(load_classifier(settings.nsfw_classifier))
    scan_prompt("")  # compiles the lexicon (~0.15 s)
    return Worker(
        settings,
        services.store,
        services.storage,
        services.signer,
        endpoints,
        engines,
        upscaler,
        moderator,
    )
