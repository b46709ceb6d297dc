"""Riding out a job database that is down or too busy to answer: telling such an error from a
bug (the API answers it with 503, not 500), logging an outage once instead of a traceback per
try, and the backoff between tries of workers and the webhook dispatcher."""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Callable
from typing import Final, TypeVar

from sqlalchemy import exc

from retouch.storage.base import POSTGRES_DISK_FULL

T = TypeVar("T")

# Pauses between tries while the database is down: doubling from the first to the longest,
# so a recovered database is used again within about a second.
RETRY_FIRST_SECONDS: Final = 0.2
RETRY_MAX_SECONDS: Final = 1.0
# SQLite's primary result codes for "another connection holds the lock" (after the busy
# timeout); the extended codes carry them in their low byte.
_SQLITE_BUSY_CODES: Final = frozenset({sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED})
# PostgreSQL's SQLSTATEs of a server that answers but is busy: query_canceled (our statement
# timeout), lock_not_available, too_many_connections.
_BUSY_STATES: Final = frozenset({"57014", "55P03", "53300"})


def is_unavailable(error: BaseException) -> bool:
    """Whether `error` says the database cannot answer now (unreachable, connection lost,
    pool exhausted, statement timed out, SQLite locked), as opposed to a bug in a statement.
    Trying again later may succeed."""
    if isinstance(error, exc.TimeoutError):  # no pooled connection came free in time
        return True
    if not isinstance(error, exc.DBAPIError):
        return False
    if error.connection_invalidated:
        return True
    if isinstance(error.orig, sqlite3.Error):
        # Any other SQLite error (no such table, a syntax error) is a bug, not an outage.
        code = getattr(error.orig, "sqlite_errorcode", None)
        return code is not None and code & 0xFF in _SQLITE_BUSY_CODES
    # A full disk (SQLSTATE 53100) is an OperationalError too, but waiting will not end it:
    # the caller fails what it was doing (storage_full) instead of retrying forever.
    if getattr(error.orig, "sqlstate", None) == POSTGRES_DISK_FULL:
        return False
    # psycopg's OperationalError covers a refused or lost connection, an administrator's
    # shutdown, too many connections and a statement timeout; InterfaceError a closed one.
    return isinstance(error, exc.OperationalError | exc.InterfaceError)


def is_busy(error: BaseException) -> bool:
    """Whether an unavailable database is there but busy (locked, timed out, out of
    connections), not gone."""
    if isinstance(error, exc.TimeoutError):
        return True
    orig = getattr(error, "orig", None)
    return isinstance(orig, sqlite3.Error) or getattr(orig, "sqlstate", None) in _BUSY_STATES


def describe(error: BaseException) -> str:
    """The driver's own first line, without SQLAlchemy's statement and parameters."""
    orig = getattr(error, "orig", None) or error
    lines = str(orig).strip().splitlines()
    return f"{type(orig).__name__}: {lines[0] if lines else ''}"


class Backoff:
    """The pauses between tries: RETRY_FIRST_SECONDS doubling up to RETRY_MAX_SECONDS."""

    def __init__(
        self, first: float = RETRY_FIRST_SECONDS, maximum: float = RETRY_MAX_SECONDS
    ) -> None:
        self.first = first
        self.maximum = maximum
        self._next = first

    def next(self) -> float:
        pause, self._next = self._next, min(self._next * 2, self.maximum)
        return pause

    def reset(self) -> None:
        self._next = self.first


class OutageLog:
    """One warning when the database stops answering, one line when it answers again, and
    nothing for the tries in between (a traceback per try would bury everything else)."""

    def __init__(self, logger: logging.Logger, what: str) -> None:
        self.logger = logger
        self.what = what
        self._lock = threading.Lock()
        self._since: float | None = None

    @property
    def down(self) -> bool:
        return self._since is not None

    def failed(self, error: BaseException) -> None:
        with self._lock:
            if self._since is not None:
                return
            self._since = time.monotonic()
        self.logger.warning(
            "%s: the job database does not answer (%s); retrying", self.what, describe(error)
        )

    def recovered(self) -> None:
        with self._lock:
            since, self._since = self._since, None
        if since is not None:
            self.logger.info(
                "%s: the job database answers again (after %.1f s)",
                self.what,
                time.monotonic() - since,
            )

    def answer_or(self, call: Callable[[], T], fallback: T, *, shows_recovery: bool = True) -> T:
        """call(), or `fallback` while the database does not answer (any other error is
        raised): for writes that may be skipped, and reads whose "don't know" has a safe
        meaning. A read passes shows_recovery=False: SQLite answers reads while a writer
        holds the lock, and the outage would be logged as over at every read."""
        try:
            result = call()
        except Exception as error:
            if not is_unavailable(error):
                raise
            self.failed(error)
            return fallback
        if shows_recovery:
            self.recovered()
        return result


def until_answered(
    call: Callable[[], T],
    outage: OutageLog,
    *,
    give_up: Callable[[], bool] = lambda: False,
    sleep: Callable[[float], object] = time.sleep,
) -> T:
    """call() once the database answers: retried with backoff while it is unavailable, until
    give_up() says the answer no longer matters (the last error is raised then). Any other
    error is raised at once."""
    backoff = Backoff()
    while True:
        try:
            result = call()
        except Exception as error:
            if not is_unavailable(error) or give_up():
                raise
            outage.failed(error)
            sleep(backoff.next())
            continue
        outage.recovered()
        return result
