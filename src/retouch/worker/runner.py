"""The worker loop: claim a job, hold its lease while it runs, finish it exactly once."""

from __future__ import annotations

import logging
import os
import socket
import threading
import time

from retouch.config import Settings
from retouch.engine.base import EditCancelled, Engine
from retouch.jobs.models import Claim
from retouch.jobs.store import JobStore
from retouch.media.fetch import FetchConfig
from retouch.storage.local import LocalStorage
from retouch.worker.edit_job import JobFailure, run_edit_job

log = logging.getLogger("retouch.worker")

# An idle worker still tries to claim this often, so expired leases get reaped even when no
# other process writes to the database.
IDLE_CLAIM_SECONDS = 1.0


def fetch_config(settings: Settings) -> FetchConfig:
    return FetchConfig(
        allow=settings.fetch_allow,
        max_bytes=settings.fetch_max_bytes,
        connect_timeout=settings.fetch_connect_timeout,
        read_timeout=settings.fetch_read_timeout,
        total_timeout=settings.fetch_total_timeout,
    )


class LeaseKeeper:
    """Renews a claim's lease in the background; `lost` is set if renewing ever fails, after
    which the job's outcome must be thrown away (another worker owns it now)."""

    def __init__(self, store: JobStore, claim: Claim, lease_seconds: float) -> None:
        self.store = store
        self.claim = claim
        self.lease_seconds = lease_seconds
        self.lost = threading.Event()
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, name="lease-keeper", daemon=True)

    def _run(self) -> None:
        while not self._done.wait(self.lease_seconds / 3):
            try:
                renewed = self.store.renew(self.claim, lease_seconds=self.lease_seconds)
            except Exception:
                log.exception("lease renewal failed; retrying")
                continue
            if not renewed:
                log.warning("lost the lease on %s; its result will be discarded", self.claim.job.id)
                self.lost.set()
                return

    def __enter__(self) -> LeaseKeeper:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._done.set()
        self._thread.join()


class Worker:
    def __init__(
        self, settings: Settings, store: JobStore, storage: LocalStorage, engine: Engine
    ) -> None:
        self.settings = settings
        self.store = store
        self.storage = storage
        self.engine = engine
        self.worker_id = f"{socket.gethostname()}:{os.getpid()}"
        self.stopping = threading.Event()
        self._fetch_config = fetch_config(settings)

    def stop(self) -> None:
        """Stop after the current step: a running job goes back to the queue."""
        self.stopping.set()

    def run_forever(self) -> None:
        log.info("worker %s ready", self.worker_id)
        while not self.stopping.is_set():
            if not self.run_once():
                # Wake on any commit by another connection (a submit) or after a second.
                self.store.wait_for_change(IDLE_CLAIM_SECONDS)
        log.info("worker %s stopped", self.worker_id)

    def run_once(self) -> bool:
        """Claim and run one job. False when the queue was empty."""
        claim = self.store.claim(
            worker_id=self.worker_id, lease_seconds=self.settings.lease_seconds
        )
        if claim is None:
            return False
        self.run_claim(claim)
        return True

    def run_claim(self, claim: Claim) -> None:
        job = claim.job
        log.info("job %s: started (attempt %d)", job.id, job.attempts)
        started = time.perf_counter()
        with LeaseKeeper(self.store, claim, self.settings.lease_seconds) as lease:

            def should_cancel() -> bool:
                return lease.lost.is_set() or self.stopping.is_set()

            try:
                result = run_edit_job(
                    job_id=job.id,
                    attempt_tag=claim.lease_token[:8],
                    input=job.input,
                    engine=self.engine,
                    storage=self.storage,
                    fetch_config=self._fetch_config,
                    max_input_pixels=self.settings.max_input_pixels,
                    should_cancel=should_cancel,
                )
            except EditCancelled:
                if not lease.lost.is_set():
                    self.store.release(claim)
                    log.info("job %s: put back in the queue (worker stopping)", job.id)
                return
            except JobFailure as failure:
                self.store.fail(claim, code=failure.code, message=failure.message)
                log.info("job %s: failed: %s", job.id, failure.message)
                return
            except Exception as error:
                log.exception("job %s: internal error", job.id)
                self.store.fail(
                    claim,
                    code="internal_error",
                    message=f"internal error ({type(error).__name__}); the operator's log "
                    "has the details. Submitting again may work.",
                )
                return
        result["timings"]["job_s"] = round(time.perf_counter() - started, 4)
        if not self.store.complete(claim, result=result):
            # Another worker took the job over after our lease expired: ours is discarded.
            for output in result["outputs"]:
                self.storage.delete(output["file"])
            log.warning("job %s: finished after losing the lease; discarded", job.id)
            return
        log.info("job %s: succeeded in %.2f s", job.id, time.perf_counter() - started)
