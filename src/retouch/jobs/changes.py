"""How a store learns that the database changed, so an idle worker or a waiting client wakes
on a commit instead of polling the tables.

SQLite: `PRAGMA data_version` changes whenever another connection commits, and reading it
takes no lock, so one dedicated sqlite3 connection reads it every few milliseconds.
PostgreSQL: every write that can matter to a waiter sends `NOTIFY retouch_jobs, '<job id>'`
in its transaction (delivered only if it commits); one dedicated connection per store LISTENs
in a background thread and bumps a counter that waiters sleep on. Nothing polls.
"""

from __future__ import annotations

import logging
import os
import selectors
import sqlite3
import threading
import time
from typing import TYPE_CHECKING, Protocol

from sqlalchemy import URL, Engine

if TYPE_CHECKING:  # imported where used: SQLite setups and client commands never load it
    import psycopg

log = logging.getLogger(__name__)

# The channel every store's writes notify and every store's listener listens on.
CHANNEL = "retouch_jobs"
# How often an idle worker looks at SQLite's change counter: a pick-up within a few ms
# costs one tiny pragma read per tick and no write lock.
CHANGE_POLL_SECONDS = 0.005
# A listener that heard nothing this long asks the server whether it is still there: a
# server that vanished without closing the socket shows up here, not in select().
LISTEN_HEALTH_SECONDS = 15.0
# Pauses between attempts to reconnect a lost listener: doubling up to the maximum.
RECONNECT_FIRST_SECONDS = 0.1
RECONNECT_MAX_SECONDS = 5.0
LISTENER_NAME = "retouch-listen"


class ChangeWatch(Protocol):
    def token(self) -> int:
        """A marker of the database's state; it differs once another commit landed."""
        ...

    def wait(self, timeout: float, since: int | None) -> bool:
        """Block until the marker differs from `since` (or from now); False after timeout."""
        ...

    def close(self) -> None: ...


def watch_changes(engine: Engine) -> ChangeWatch:
    if engine.dialect.name == "postgresql":
        return PostgresChanges(engine.url)
    return SqliteChanges(str(engine.url.database))


class SqliteChanges:
    def __init__(self, path: str) -> None:
        self._path = path
        self._lock = threading.Lock()
        self._connection: sqlite3.Connection | None = None

    def token(self) -> int:
        # PRAGMA data_version changes when any *other* connection commits; reading it takes
        # no lock, so polling it every few ms is far cheaper than trying to claim.
        with self._lock:
            if self._connection is None:
                self._connection = sqlite3.connect(
                    self._path, isolation_level=None, check_same_thread=False
                )
            return int(self._connection.execute("PRAGMA data_version").fetchone()[0])

    def wait(self, timeout: float, since: int | None) -> bool:
        deadline = time.monotonic() + timeout
        start = self.token() if since is None else since
        while True:
            if self.token() != start:
                return True
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            time.sleep(min(CHANGE_POLL_SECONDS, remaining))

    def close(self) -> None:
        with self._lock:
            if self._connection is not None:
                self._connection.close()
                self._connection = None


class PostgresChanges:
    """A counter bumped by a LISTEN thread. Started on first use (a `keys` command never
    needs it). A lost connection is reconnected, and both the loss and the reconnection
    count as changes: notifications sent in between are gone, so waiters re-read."""

    def __init__(self, url: URL) -> None:
        # psycopg's own connection (not one from the pool: it stays in LISTEN for good).
        self._conninfo = url.set(drivername="postgresql").render_as_string(hide_password=False)
        self._condition = threading.Condition()
        self._version = 0
        self._start_lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._wake_read, self._wake_write = os.pipe()
        self.reconnects = 0

    def token(self) -> int:
        self._start()
        with self._condition:
            return self._version

    def wait(self, timeout: float, since: int | None) -> bool:
        self._start()
        with self._condition:
            start = self._version if since is None else since
            return self._condition.wait_for(lambda: self._version != start, timeout)

    def close(self) -> None:
        self._stopping.set()
        os.write(self._wake_write, b"x")
        thread = self._thread
        if thread is not None:
            thread.join(timeout=10.0)
            if thread.is_alive():
                return  # it still selects on the pipe: leave it open
        os.close(self._wake_read)
        os.close(self._wake_write)

    def _start(self) -> None:
        if self._thread is not None:
            return
        with self._start_lock:
            if self._thread is not None or self._stopping.is_set():
                return
            import psycopg

            # Connected before the first token is handed out, so every commit after it is
            # heard; if the server is unreachable now, the thread keeps trying.
            try:
                connection: psycopg.Connection[tuple[object, ...]] | None = self._connect()
            except psycopg.Error:
                log.warning("change listener: cannot connect yet; retrying", exc_info=True)
                connection = None
            self._thread = threading.Thread(
                target=self._run, args=(connection,), name=LISTENER_NAME, daemon=True
            )
            self._thread.start()

    def _connect(self) -> psycopg.Connection[tuple[object, ...]]:
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

    def _bump(self) -> None:
        with self._condition:
            self._version += 1
            self._condition.notify_all()

    def _run(self, connection: psycopg.Connection[tuple[object, ...]] | None) -> None:
        import psycopg

        pause = RECONNECT_FIRST_SECONDS
        while not self._stopping.is_set():
            if connection is None:
                try:
                    connection = self._connect()
                except psycopg.Error as error:
                    log.warning("change listener: reconnecting failed: %s", error)
                    self._stopping.wait(pause)
                    pause = min(pause * 2, RECONNECT_MAX_SECONDS)
                    continue
                self.reconnects += 1
                self._bump()
                pause = RECONNECT_FIRST_SECONDS
            try:
                self._listen(connection)
            except psycopg.Error as error:
                if not self._stopping.is_set():
                    log.warning("change listener: connection lost (%s); reconnecting", error)
                    self._bump()
            finally:
                connection.close()
            connection = None

    def _listen(self, connection: psycopg.Connection[tuple[object, ...]]) -> None:
        """Until close(): wake waiters on each batch of notifications. Raises psycopg.Error
        when the connection is lost."""
        with selectors.DefaultSelector() as selector:
            selector.register(connection.fileno(), selectors.EVENT_READ)
            selector.register(self._wake_read, selectors.EVENT_READ)
            while not self._stopping.is_set():
                ready = selector.select(LISTEN_HEALTH_SECONDS)
                if self._stopping.is_set():
                    return
                if not ready:
                    connection.execute("SELECT 1")
                # timeout=0: take what has arrived (or what the health check buffered).
                if any(True for _ in connection.notifies(timeout=0)):
                    self._bump()
