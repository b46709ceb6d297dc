"""How a store learns that the database changed, so an idle worker or a waiting client wakes
on a commit instead of polling the tables.

Each store has one watcher: a thread that bumps a counter on every commit it hears of (token,
wait: an idle worker wakes on any change) and hands each batch of changed job ids to its
subscribers (subscribe: the API's ChangeFeed wakes the waiters of those jobs only).
- SQLite: `PRAGMA data_version` changes whenever another connection commits, and reading it
  takes no lock, so the thread reads it every few milliseconds. While someone subscribes, a
  change is followed by one indexed read of the jobs whose `change_seq` passed the last one
  seen: every write a waiter cares about sets it to the next value (SqlJobStore._notify; the
  write lock makes the values grow with each commit).
- PostgreSQL: those writes send `NOTIFY retouch_jobs, '<id> <state> <seq>'` (PAYLOAD) in
  their transaction, delivered only if it commits; the thread LISTENs on its own connection
  and sleeps in select() between notifications. Nothing polls.
Which changes moved the queue the watcher works out from the jobs' states (QueuedJobs), so
writers need not say. Whenever changes may have gone unheard (the LISTEN connection was lost,
a read failed, the watch just began), subscribers get `everything`: each waiter re-reads.
"""

from __future__ import annotations

import contextlib
import logging
import os
import selectors
import sqlite3
import threading
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, Protocol

from sqlalchemy import URL, ColumnElement, Engine, FromClause, func

from retouch.contract.states import JobState
from retouch.jobs.schema import jobs
from retouch.jobs.store import JobChanges

if TYPE_CHECKING:  # imported where used: SQLite setups and client commands never load it
    import psycopg

log = logging.getLogger(__name__)

# The channel every store's writes notify and every store's listener listens on.
CHANNEL = "retouch_jobs"
# How often SQLite's reader looks at the change counter: a pick-up within a few ms costs one
# tiny pragma read per tick and no lock.
CHANGE_POLL_SECONDS = 0.005
# A listener that heard nothing this long asks the server whether it is still there: a
# server that vanished without closing the socket shows up here, not in select().
LISTEN_HEALTH_SECONDS = 15.0
# Pauses between attempts to reconnect a lost listener: doubling up to the maximum, short
# enough that waiters hear commits again within about a second of the server's return.
RECONNECT_FIRST_SECONDS = 0.1
RECONNECT_MAX_SECONDS = 1.0
LISTENER_NAME = "retouch-listen"


def payload(rows: FromClause) -> ColumnElement[str]:
    """A PostgreSQL notification's payload: what the listener needs to tell whom to wake and
    whether the queue moved, computed by the notifying statement after its write, from jobs
    or from the rows a write returned (with the id, state and seq columns of jobs)."""
    return func.concat_ws(" ", rows.c.id, rows.c.state, rows.c.seq)


PAYLOAD = payload(jobs)
EVERYTHING = JobChanges(everything=True)
# A commit that changed no job a waiter cares about: it only wakes token waiters.
NO_JOBS = JobChanges()

Subscriber = Callable[[JobChanges], None]


class ChangeWatch(Protocol):
    def token(self) -> int:
        """A marker of the database's state; it differs once another commit landed."""
        ...

    def wait(self, timeout: float, since: int | None) -> bool:
        """Block until the marker differs from `since` (or from now); False after timeout."""
        ...

    def subscribe(self, callback: Subscriber) -> Callable[[], None]:
        """See ChangeSource.watch_jobs."""
        ...

    def close(self) -> None: ...


def watch_changes(engine: Engine) -> ChangeWatch:
    if engine.dialect.name == "postgresql":
        return PostgresChanges(engine.url)
    return SqliteChanges(str(engine.url.database))


class QueuedJobs:
    """The queued jobs (id → seq) as the watcher last saw them, loaded when someone subscribes
    and kept up from each change heard, to tell which changes moved the queue: a job leaving
    it (claimed, cancelled), or entering it ahead of another (requeued); a submit joins at the
    end and moves no one. Only the new state of a changed job is known, never the write."""

    def __init__(self, queued: Iterable[tuple[str, int]]) -> None:
        self._queued = dict(queued)
        # The highest seq seen queued, not lowered when it leaves: a job entering below it
        # counts as a move even when no one waits behind it any more (a wasted re-read).
        self._highest = max(self._queued.values(), default=0)

    def moved_by(self, job_id: str, state: str | None, seq: int | None) -> bool:
        """Note the job's new state; whether the change moved the queue. Without a state
        (a notification from an older writer) it may have."""
        if state is None or seq is None:
            return True
        if state != JobState.QUEUED:
            return self._queued.pop(job_id, None) is not None
        if job_id in self._queued:
            return False
        self._queued[job_id] = seq
        ahead = seq < self._highest
        self._highest = max(self._highest, seq)
        return ahead


class _Watcher:
    """What both backends share: the thread (started on first use: a `keys` command never
    needs it), the counter token and wait read, and the subscribers. The thread's own state
    (its connection, what it saw last) is touched by the thread only."""

    def __init__(self, thread_name: str) -> None:
        self._condition = threading.Condition()
        self._version = 0
        self._lock = threading.Lock()  # the subscribers, and starting the thread
        self._subscribers: list[Subscriber] = []
        self._thread_name = thread_name
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._stopping = threading.Event()

    def token(self) -> int:
        self._start()
        # Once the thread watches (or has tried to connect once), every commit after this
        # token is heard.
        self._ready.wait()
        with self._condition:
            return self._version

    def wait(self, timeout: float, since: int | None) -> bool:
        start = self.token() if since is None else since
        with self._condition:
            return self._condition.wait_for(lambda: self._version != start, timeout)

    def subscribe(self, callback: Subscriber) -> Callable[[], None]:
        with self._lock:
            self._subscribers.append(callback)
        self._start()
        self._wake()

        def unsubscribe() -> None:
            with self._lock:
                if callback in self._subscribers:
                    self._subscribers.remove(callback)

        return unsubscribe

    def close(self) -> None:
        if self._stopping.is_set():
            return
        self._stopping.set()
        self._wake()
        thread = self._thread
        if thread is not None:
            thread.join(timeout=10.0)
        self._ready.set()  # a token() still waiting returns

    def _start(self) -> None:
        if self._thread is not None:
            return
        with self._lock:
            if self._thread is not None or self._stopping.is_set():
                return
            self._thread = threading.Thread(target=self._run, name=self._thread_name, daemon=True)
            self._thread.start()

    def _subscribed(self) -> bool:
        with self._lock:
            return bool(self._subscribers)

    def _publish(self, changes: JobChanges) -> None:
        """Wake token waiters (any commit), then hand the changes to the subscribers."""
        with self._condition:
            self._version += 1
            self._condition.notify_all()
        if not (changes.job_ids or changes.queue_moved or changes.everything):
            return
        with self._lock:
            subscribers = list(self._subscribers)
        for callback in subscribers:
            try:
                callback(changes)
            except Exception:  # one broken subscriber must not deafen the others
                log.exception("change watch: a subscriber failed")

    def _run(self) -> None:
        raise NotImplementedError

    def _wake(self) -> None:
        """Cut the thread's sleep short: a subscriber to load for, or close()."""


_CHANGED_SINCE = "SELECT id, change_seq, state, seq FROM jobs WHERE change_seq > ?"
_LAST_CHANGE = "SELECT coalesce(max(change_seq), 0) FROM jobs"
_QUEUED = f"SELECT id, seq FROM jobs WHERE state = '{JobState.QUEUED.value}'"


class SqliteChanges(_Watcher):
    """A reader thread on its own sqlite3 connection (a commit by any other connection, its
    own process's included, changes the data_version it reads). A failed read wakes every
    waiter, and the reader reopens its connection after a pause."""

    def __init__(self, path: str) -> None:
        super().__init__("retouch-changes")
        self._path = path
        self._data_version: int | None = None
        # None while nobody subscribes: then no rows are read, only data_version.
        self._last_seq: int | None = None
        self._queued = QueuedJobs(())

    def _run(self) -> None:
        connection: sqlite3.Connection | None = None
        failed = False
        pause = RECONNECT_FIRST_SECONDS
        delay = 0.0
        while not self._stopping.wait(delay):
            try:
                if connection is None:
                    connection = sqlite3.connect(self._path, isolation_level=None)
                self._look(connection)
            except sqlite3.Error as error:
                log.warning("change reader: %s; waking every waiter", error)
                if connection is not None:
                    connection.close()
                    connection = None
                self._data_version = self._last_seq = None
                self._publish(EVERYTHING)
                failed = True
                delay, pause = pause, min(pause * 2, RECONNECT_MAX_SECONDS)
                continue
            finally:
                self._ready.set()
            if failed:  # commits while it was failing went unseen
                self._publish(EVERYTHING)
                failed = False
            delay, pause = CHANGE_POLL_SECONDS, RECONNECT_FIRST_SECONDS
        if connection is not None:
            connection.close()

    def _look(self, connection: sqlite3.Connection) -> None:
        # Read before any load: a commit after it shows as a new version at the next look.
        version = int(connection.execute("PRAGMA data_version").fetchone()[0])
        changed = self._data_version is not None and version != self._data_version
        self._data_version = version
        if not self._subscribed():
            self._last_seq = None
        elif self._last_seq is None:
            self._load(connection)
            self._publish(EVERYTHING)  # what changed between the subscribe and the load
            return
        if not changed:
            return
        if self._last_seq is None:
            self._publish(NO_JOBS)
            return
        rows = connection.execute(_CHANGED_SINCE, (self._last_seq,)).fetchall()
        if not rows:
            self._publish(NO_JOBS)  # a commit of other tables: heartbeats, logs, webhooks
            return
        self._last_seq = max(int(change_seq) for _, change_seq, _, _ in rows)
        moved = [self._queued.moved_by(job_id, state, seq) for job_id, _, state, seq in rows]
        self._publish(JobChanges(frozenset(row[0] for row in rows), any(moved)))

    def _load(self, connection: sqlite3.Connection) -> None:
        # One read transaction: the queued jobs exactly as of the change_seq it starts from.
        connection.execute("BEGIN")
        try:
            last = int(connection.execute(_LAST_CHANGE).fetchone()[0])
            queued = connection.execute(_QUEUED).fetchall()
        finally:
            connection.execute("COMMIT")
        self._queued = QueuedJobs(queued)
        self._last_seq = last


class PostgresChanges(_Watcher):
    """A LISTEN thread on its own psycopg connection (not one from the pool: it stays in
    LISTEN for good). A lost connection is reconnected, and both the loss and the
    reconnection count as changes of everything: notifications sent in between are gone."""

    def __init__(self, url: URL) -> None:
        super().__init__(LISTENER_NAME)
        self._conninfo = url.set(drivername="postgresql").render_as_string(hide_password=False)
        # Written to cut select() short; never blocks, even with the thread gone.
        self._wake_read, self._wake_write = os.pipe()
        os.set_blocking(self._wake_write, False)
        self._queued: QueuedJobs | None = None  # None while nobody subscribes
        self.reconnects = 0

    def close(self) -> None:
        if self._stopping.is_set():
            return
        super().close()
        thread = self._thread
        if thread is not None and thread.is_alive():
            return  # it still selects on the pipe: leave it open
        os.close(self._wake_read)
        os.close(self._wake_write)

    def _wake(self) -> None:
        # A full pipe already holds wake-ups the thread has not read.
        with contextlib.suppress(BlockingIOError):
            os.write(self._wake_write, b"x")

    def _connect(self) -> psycopg.Connection[tuple[Any, ...]]:
        import psycopg

        connection = psycopg.connect(
            self._conninfo,
            autocommit=True,
            application_name=LISTENER_NAME,
            connect_timeout=10,
            keepalives=1,
            keepalives_idle=30,
            keepalives_interval=10,
            keepalives_count=3,
        )
        connection.execute(f"LISTEN {CHANNEL}")
        return connection

    def _run(self) -> None:
        import psycopg

        pause = RECONNECT_FIRST_SECONDS
        first = True
        while not self._stopping.is_set():
            try:
                connection = self._connect()
            except psycopg.Error as error:
                # Tokens are handed out meanwhile: the connection that follows counts as
                # a reconnection (a change).
                log.warning("change listener: cannot connect (%s); retrying", error)
                self._ready.set()
                first = False
                self._stopping.wait(pause)
                pause = min(pause * 2, RECONNECT_MAX_SECONDS)
                continue
            if not first:
                self.reconnects += 1
                self._publish(EVERYTHING)
            first = False
            pause = RECONNECT_FIRST_SECONDS
            self._ready.set()
            try:
                self._listen(connection)
            except psycopg.Error as error:
                if not self._stopping.is_set():
                    log.warning("change listener: connection lost (%s); reconnecting", error)
                    self._publish(EVERYTHING)
            finally:
                connection.close()
                self._queued = None

    def _listen(self, connection: psycopg.Connection[tuple[Any, ...]]) -> None:
        """Until close(): hand on each batch of notifications. Raises psycopg.Error when the
        connection is lost."""
        with selectors.DefaultSelector() as selector:
            selector.register(connection.fileno(), selectors.EVENT_READ)
            selector.register(self._wake_read, selectors.EVENT_READ)
            while not self._stopping.is_set():
                self._track(connection)
                # timeout=0: take what has arrived, or what a query here buffered.
                payloads = [notify.payload for notify in connection.notifies(timeout=0)]
                if payloads:
                    self._publish(self._read(payloads))
                ready = selector.select(LISTEN_HEALTH_SECONDS)
                if not ready:
                    connection.execute("SELECT 1")
                elif any(key.fd == self._wake_read for key, _ in ready):
                    os.read(self._wake_read, 4096)

    def _track(self, connection: psycopg.Connection[tuple[Any, ...]]) -> None:
        """Load the queued jobs when someone subscribes; forget them when no one does."""
        if not self._subscribed():
            self._queued = None
        elif self._queued is None:
            # After LISTEN: a commit before this read is in it, one after it is heard.
            rows = connection.execute(_QUEUED)
            self._queued = QueuedJobs((str(job_id), int(seq)) for job_id, seq in rows)
            self._publish(EVERYTHING)  # what changed between the subscribe and the load

    def _read(self, payloads: list[str]) -> JobChanges:
        job_ids: set[str] = set()
        moved = False
        for payload in payloads:
            job_id, state, seq = _parse(payload)
            job_ids.add(job_id)
            if self._queued is not None:
                moved = self._queued.moved_by(job_id, state, seq) or moved
        return JobChanges(frozenset(job_ids), moved)


def _parse(payload: str) -> tuple[str, str | None, int | None]:
    """A PAYLOAD's job id, state and seq; a bare job id (an older writer's) has neither."""
    parts = payload.split(" ")
    if len(parts) == 3 and parts[2].isdigit():
        return parts[0], parts[1], int(parts[2])
    return payload, None, None
