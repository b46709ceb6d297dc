"""The gauges read from the job database at scrape time: the queue, the running jobs and the
workers are the same whichever process answers the scrape, so they are read, not counted.
Only the API's `/metrics` shows them (a worker's `--metrics-port` does not).

A scrape reads a `DatabaseSnapshot` first (api/metrics.py: on a thread, given up after a few
seconds), then exposes it with `DatabaseGauges`, which never reads and never raises: with no
snapshot (the database down or slow) the scrape answers without these gauges and with
`retouch_scrape_database_up 0`."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Final

from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from sqlalchemy import Engine, func, select

from retouch.jobs.models import WorkerRecord
from retouch.jobs.schema import api_keys, jobs
from retouch.jobs.store import WorkerRegistry

MIB: Final = 1024 * 1024
# The heartbeat's memory figures (worker/memory.py) and the `kind` label of each.
GPU_MEMORY: Final = {
    "gpu_allocated_mib": "allocated",
    "gpu_reserved_mib": "reserved",
    "gpu_peak_mib": "peak",
}


@dataclass(frozen=True)
class DatabaseSnapshot:
    queued: list[tuple[str, str, int]]  # endpoint, key role, jobs
    running: list[tuple[str, int]]  # endpoint, jobs
    workers: list[WorkerRecord]


def read_snapshot(engine: Engine, store: WorkerRegistry, seen_within: float) -> DatabaseSnapshot:
    """Two grouped counts and the workers seen within `seen_within` seconds. Raises what the
    database raises."""
    role = func.coalesce(api_keys.c.role, "unknown")
    queued = (
        select(jobs.c.endpoint, role, func.count())
        .select_from(jobs.outerjoin(api_keys, jobs.c.key_id == api_keys.c.id))
        .where(jobs.c.state == "queued")
        .group_by(jobs.c.endpoint, role)
    )
    running = (
        select(jobs.c.endpoint, func.count())
        .where(jobs.c.state == "running")
        .group_by(jobs.c.endpoint)
    )
    with engine.connect() as conn:
        queued_rows = [(str(e), str(r), int(n)) for e, r, n in conn.execute(queued)]
        running_rows = [(str(e), int(n)) for e, n in conn.execute(running)]
    return DatabaseSnapshot(queued_rows, running_rows, store.workers(seen_within=seen_within))


class DatabaseGauges:
    """A prometheus_client collector of one snapshot (None: the database did not answer)."""

    def __init__(self, snapshot: DatabaseSnapshot | None) -> None:
        self.snapshot = snapshot

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily(
            "retouch_scrape_database_up",
            "1 if the job database answered this scrape's reads (the queue, running jobs and "
            "workers gauges are left out when it did not)",
        )
        up.add_metric([], 0 if self.snapshot is None else 1)
        yield up
        if self.snapshot is None:
            return
        queue = GaugeMetricFamily(
            "retouch_queue_depth",
            "Jobs waiting in the queue, by endpoint and the role of the key that submitted them",
            labels=["endpoint", "key_role"],
        )
        for endpoint, role, count in self.snapshot.queued:
            queue.add_metric([endpoint, role], count)
        yield queue
        running = GaugeMetricFamily(
            "retouch_jobs_running", "Jobs running now, by endpoint", labels=["endpoint"]
        )
        for endpoint, count in self.snapshot.running:
            running.add_metric([endpoint], count)
        yield running
        workers = GaugeMetricFamily(
            "retouch_workers", "Workers that sent a heartbeat recently (as GET /v1/workers)"
        )
        workers.add_metric([], len(self.snapshot.workers))
        yield workers
        memory = GaugeMetricFamily(
            "retouch_worker_gpu_memory_bytes",
            "Each worker's CUDA memory at its last heartbeat: allocated, reserved, and peak "
            "allocated (workers without a GPU are left out)",
            labels=["worker", "kind"],
        )
        for worker in self.snapshot.workers:
            report = worker.info.get("memory")
            if not isinstance(report, dict):
                continue
            for field, kind in GPU_MEMORY.items():
                value = report.get(field)
                if isinstance(value, int | float):
                    memory.add_metric([worker.id, kind], value * MIB)
        yield memory
