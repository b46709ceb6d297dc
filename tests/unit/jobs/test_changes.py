"""A store's watch (retouch.jobs.changes): which jobs changed, whether the queue moved, and
`everything` when changes may have gone unheard; on each backend where it takes `store`."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from retouch.jobs.changes import QueuedJobs
from retouch.jobs.models import Claim
from retouch.jobs.sql_store import SqlJobStore

from ..databases import open_at
from .heard import Heard


def submit(store: SqlJobStore) -> str:
    return store.submit(key_id="k", endpoint="e", input={}, max_queued=100).id


def claim(store: SqlJobStore) -> Claim:
    claimed = store.claim(worker_id="w", lease_seconds=30)
    assert claimed is not None
    return claimed


def test_a_watch_hears_the_jobs_that_changed_and_no_others(store: SqlJobStore) -> None:
    watched, other, last = submit(store), submit(store), submit(store)
    heard = Heard(store)
    store.cancel(other, key_id="k")
    store.cancel(last, key_id="k")
    batches = heard.until(lambda changes: last in changes.job_ids)
    assert any(other in changes.job_ids for changes in batches)
    assert not any(watched in changes.job_ids for changes in batches)
    store.cancel(watched, key_id="k")
    assert heard.job(watched).job_ids == {watched}
    heard.stop()


def test_a_log_line_is_a_change_of_its_job(store: SqlJobStore) -> None:
    """So an event stream with ?logs=1 sends it at once, not with the job's next change."""
    job_id = submit(store)
    claim(store)
    heard = Heard(store)
    store.add_log(job_id, level="info", message="a line of its own")
    assert heard.job(job_id).job_ids == {job_id}
    heard.stop()


def test_the_watch_says_when_the_queue_moved(store: SqlJobStore) -> None:
    heard = Heard(store)
    first = submit(store)
    assert not heard.job(first).queue_moved  # a submit joins at the end: no one moves
    second = submit(store)
    assert not heard.job(second).queue_moved
    running = claim(store)
    assert heard.job(first).queue_moved  # left the queue
    store.report_progress(running, step=1, total=2)
    assert not heard.job(first).queue_moved
    store.release(running)
    assert heard.job(first).queue_moved  # back in the queue, ahead of `second`
    store.cancel(second, key_id="k")
    assert heard.job(second).queue_moved
    again = claim(store)
    assert heard.job(first).queue_moved
    store.complete(again, result={"outputs": []})
    assert not heard.job(first).queue_moved  # it had left the queue already
    heard.stop()


def test_queued_jobs_tell_moves_from_the_states_they_see() -> None:
    queued = QueuedJobs([("a", 1), ("b", 2)])
    assert not queued.moved_by("c", "queued", 3)  # joins at the end
    assert not queued.moved_by("c", "queued", 3)  # already seen there
    assert not queued.moved_by("x", "running", 0)  # was not queued
    assert queued.moved_by("a", "running", 1)  # left
    assert queued.moved_by("a", "queued", 1)  # requeued ahead of b and c
    assert queued.moved_by("b", "cancelled", 2)
    assert queued.moved_by("d", None, None)  # an older writer's bare id: it may have


def test_a_failed_read_wakes_every_waiter_and_the_reader_recovers(tmp_path: Path) -> None:
    path = tmp_path / "jobs.db"
    store = open_at(f"sqlite:///{path}")
    heard = Heard(store)
    with sqlite3.connect(path) as admin:
        admin.execute("ALTER TABLE jobs RENAME COLUMN change_seq TO gone")
    heard.until(lambda changes: changes.everything)
    with sqlite3.connect(path) as admin:
        admin.execute("ALTER TABLE jobs RENAME COLUMN gone TO change_seq")

    while not heard.by_id(submit(store)):  # until it reads again, after a pause
        pass
    heard.stop()
    store.close()


def test_the_watch_and_the_change_counter_share_one_reader(store: SqlJobStore) -> None:
    """An idle worker's wait and the API's watch on one store (as in `retouch serve`'s tests):
    a commit wakes both."""
    heard = Heard(store)
    token = store.change_token()
    job_id = submit(store)
    assert store.wait_for_change(30, since=token)
    heard.job(job_id)
    heard.stop()
