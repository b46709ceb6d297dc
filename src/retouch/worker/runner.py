"""The worker loop: claim a job, hold its lease while it runs, report its progress, finish it
exactly once."""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

from retouch.config import Settings
from retouch.engine.base import EditCancelled, Engine
from retouch.engine.upscale import Upscaler
from retouch.jobs.models import Claim
from retouch.jobs.store import ClaimStore, WorkerStore
from retouch.log_context import request_id_bound
from retouch.media.fetch import FetchConfig
from retouch.safety.moderation import Moderator
from retouch.served_endpoints import Endpoint
from retouch.services import Services
from retouch.storage.base import Storage
from retouch.storage.signing import UrlSigner
from retouch.worker.edit_job import JobFailure, JobTools, model_info, run_edit_job
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
    cancelled it): its outcome must then be thrown away."""

    def __init__(self, store: ClaimStore, claim: Claim, lease_seconds: float) -> None:
        self.store = store
        self.claim = claim
        self.lease_seconds = lease_seconds
        self.lost = threading.Event()
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, name="lease-keeper", daemon=True)
        self._last_hold_check = 0.0
        self._last_progress_write = 0.0

    def _run(self) -> None:
        while not self._done.wait(self.lease_seconds / 3):
            try:
                renewed = self.store.renew(self.claim, lease_seconds=self.lease_seconds)
            except Exception:
                log.exception("lease renewal failed; retrying")
                continue
            if not renewed:
                self._mark_lost()
                return

    def _mark_lost(self) -> None:
        if not self.lost.is_set():
            log.warning("job %s: no longer ours (cancelled or reaped)", self.claim.job.id)
            self.lost.set()

    def still_held(self) -> bool:
        """Throttled check against the store, so a cancelled job stops within a step."""
        now = time.monotonic()
        if not self.lost.is_set() and now - self._last_hold_check >= HOLD_CHECK_SECONDS:
            self._last_hold_check = now
            if not self.store.is_held(self.claim):
                self._mark_lost()
        return not self.lost.is_set()

    def progress(self, step: int, total: int) -> None:
        now = time.monotonic()
        if step < total and now - self._last_progress_write < PROGRESS_WRITE_SECONDS:
            return
        self._last_progress_write = now
        if not self.store.report_progress(self.claim, step=step, total=total):
            self._mark_lost()

    def __enter__(self) -> LeaseKeeper:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._done.set()
        self._thread.join()


class ClaimReporter:
    """A running job's reporter: progress and log lines go to the store; it is to stop when
    the worker is stopping or the claim is lost."""

    def __init__(self, store: ClaimStore, lease: LeaseKeeper, stopping: threading.Event) -> None:
        self.store = store
        self.lease = lease
        self.stopping = stopping

    def on_step(self, step: int, total: int) -> None:
        self.lease.progress(step, total)

    def log(self, message: str, level: str = "info") -> None:
        self.store.add_log(self.lease.claim.job.id, level=level, message=message)

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
        self.stopping = threading.Event()
        self.current_job: str | None = None
        self._fetch_config = fetch_config(settings)
        self._heartbeat = threading.Thread(target=self._beat, name="heartbeat", daemon=True)

    def stop(self) -> None:
        """Stop after the current step: a running job goes back to the queue."""
        self.stopping.set()

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
        while not self.stopping.wait(HEARTBEAT_SECONDS):
            try:
                self.store.heartbeat(self.worker_id, info=self.health())
            except Exception:
                log.exception("heartbeat failed")

    def run_forever(self) -> None:
        self.store.heartbeat(self.worker_id, info=self.health())
        log.info(
            "worker %s ready for %s; memory %s",
            self.worker_id,
            ", ".join(self.endpoints),
            memory_report(),
        )
        self._heartbeat.start()
        try:
            while not self.stopping.is_set():
                # Taken before claiming, so a submit committed while the claim finds the queue
                # empty still wakes the wait below at once.
                token = self.store.change_token()
                if not self.run_once():
                    # Wake on any commit by another connection (a submit) or after a second.
                    self.store.wait_for_change(IDLE_CLAIM_SECONDS, since=token)
        finally:
            self.store.remove_worker(self.worker_id)
        log.info("worker %s stopped", self.worker_id)

    def run_once(self) -> bool:
        """Claim and run one job. False when the queue was empty."""
        claim = self.store.claim(
            worker_id=self.worker_id,
            lease_seconds=self.settings.lease_seconds,
            endpoints=list(self.endpoints),
        )
        if claim is None:
            return False
        self.current_job = claim.job.id
        try:
            self.run_claim(claim)
        finally:
            self.current_job = None
        return True

    def _fail(self, claim: Claim, code: str, message: str) -> None:
        if self.store.fail(claim, code=code, message=message):
            # Files left by an earlier attempt that died mid-way are no one's outcome now.
            self.storage.delete_request(claim.job.id)
            self.store.add_log(claim.job.id, level="error", message=f"failed: {message}")

    def run_claim(self, claim: Claim) -> None:
        with request_id_bound(claim.job.id):
            self._run_claim(claim)

    def _run_claim(self, claim: Claim) -> None:
        job = claim.job
        log.info("job %s: started (attempt %d)", job.id, job.attempts)
        if job.attempts > 1:
            # Files of earlier attempts that died after storing them are no one's outcome: a
            # job cancelled or failed in this attempt must not keep them. (A lost attempt
            # still running somewhere deletes its own files when it cannot complete.)
            self.storage.delete_request(job.id)
        started = time.perf_counter()
        endpoint = self.endpoints[job.endpoint]
        with LeaseKeeper(self.store, claim, self.settings.lease_seconds) as lease:
            reporter = ClaimReporter(self.store, lease, self.stopping)
            try:
                tools = JobTools(
                    engine=self.engines.get(endpoint),
                    storage=self.storage,
                    signer=self.signer,
                    fetch_config=self._fetch_config,
                    max_input_pixels=self.settings.max_input_pixels,
                    upscaler=self.upscaler,
                    moderator=self.moderator,
                )
                assert job.input is not None  # a claim loads the whole row
                result = run_edit_job(
                    job_id=job.id,
                    attempt_tag=claim.lease_token[:8],
                    input=job.input,
                    tools=tools,
                    reporter=reporter,
                )
            except EditCancelled:
                if lease.lost.is_set():
                    log.info("job %s: stopped (cancelled or taken over)", job.id)
                elif self.store.release(claim):
                    reporter.log("put back in the queue: its worker is shutting down")
                    log.info("job %s: put back in the queue (worker stopping)", job.id)
                return
            except JobFailure as failure:
                self._fail(claim, failure.code, failure.message)
                log.info("job %s: failed: %s", job.id, failure.message)
                return
            except Exception as error:
                log.exception("job %s: internal error", job.id)
                self._fail(
                    claim,
                    "internal_error",
                    f"internal error ({type(error).__name__}); the operator's log has the "
                    "details. Submitting again may work.",
                )
                return
        result.timings["job_s"] = round(time.perf_counter() - started, 4)
        files = [output.file for output in result.outputs]
        if not self.store.complete(claim, result=result.as_json_dict()):
            # Cancelled, or taken over by another worker after our lease expired: the
            # files of this attempt are not the job's outcome.
            for name in files:
                self.storage.delete(name)
            log.warning("job %s: finished after losing the claim; discarded", job.id)
            return
        self.storage.keep_only(job.id, files)
        log.info("job %s: succeeded in %.2f s", job.id, time.perf_counter() - started)


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
