"""Per-key submit rates: the `limits` library's fixed-window algorithm, its counters kept in
the job store (table rate_limits), so every API process of a deployment counts the same
submits. `limits` ships memory, Redis, Memcached and MongoDB storages only; this is its
Storage interface over the database Retouch already has."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from limits import RateLimitItem, parse
from limits.storage import Storage
from limits.strategies import FixedWindowRateLimiter
from sqlalchemy import Engine, Executable, Float, bindparam, case, delete, select
from sqlalchemy.exc import SQLAlchemyError

from retouch.jobs.database import dialect_insert, writer
from retouch.jobs.schema import rate_limits

# Counters whose window ended this long ago are deleted (at most once per this period).
_PURGE_SECONDS = 60.0


def _increment(dialect: str) -> Executable:
    """One statement: add `amount` to the counter `name`, starting a new window (of `expiry`
    seconds from `now`) when there is none or it has ended; returns the count and window end."""
    insert = dialect_insert(dialect)
    now = bindparam("now", type_=Float())
    window_end = now + bindparam("expiry", type_=Float())
    statement = insert(rate_limits).values(
        name=bindparam("name"), count=bindparam("amount"), expires_at=window_end
    )
    ended = rate_limits.c.expires_at <= now
    increment: Executable = statement.on_conflict_do_update(
        index_elements=[rate_limits.c.name],
        set_={
            "count": case(
                (ended, statement.excluded.count),
                else_=rate_limits.c.count + statement.excluded.count,
            ),
            "expires_at": case(
                (ended, statement.excluded.expires_at), else_=rate_limits.c.expires_at
            ),
        },
    ).returning(rate_limits.c.count, rate_limits.c.expires_at)
    return increment


class SqlRateStorage(Storage):
    """`limits` counters in the rate_limits table. Times are this host's clock: hosts of one
    deployment agree within far less than a window. Inside `within(conn)`, on this thread,
    every counter read and write goes through that connection: the caller's transaction (a
    submit's), so a submit it refuses or rolls back counts nothing."""

    # `limits` registers storages by URL scheme; this one is made directly, never by URL.
    STORAGE_SCHEME = ["retouch+sql"]  # noqa: RUF012 (the base class declares it a list)

    def __init__(self, engine: Engine, clock: Callable[[], float] = time.time) -> None:
        super().__init__()
        self.engine = engine
        self._writer = writer(engine)
        self._clock = clock
        self._increment = _increment(engine.dialect.name)
        self._next_purge = 0.0
        self._borrowed = threading.local()

    @property
    def base_exceptions(self) -> type[Exception]:
        return SQLAlchemyError

    @contextlib.contextmanager
    def within(self, conn: Any) -> Iterator[None]:
        """Counters read and written in the transaction of `conn` while the block runs."""
        self._borrowed.conn = conn
        try:
            yield
        finally:
            self._borrowed.conn = None

    @contextlib.contextmanager
    def _connection(self, *, write: bool) -> Iterator[Any]:
        borrowed = getattr(self._borrowed, "conn", None)
        if borrowed is not None:
            yield borrowed
        elif write:
            with self._writer.begin() as conn:
                yield conn
        else:
            with self.engine.connect() as conn:
                yield conn

    def incr(self, key: str, expiry: int, amount: int = 1) -> int:
        now = self._clock()
        params = {"name": key, "amount": amount, "expiry": float(expiry), "now": now}
        with self._connection(write=True) as conn:
            if now >= self._next_purge:
                self._next_purge = now + _PURGE_SECONDS
                conn.execute(delete(rate_limits).where(rate_limits.c.expires_at < now))
            counted = conn.execute(self._increment, params).one()
        return int(counted[0])

    def _window(self, key: str) -> tuple[int, float] | None:
        with self._connection(write=False) as conn:
            row = conn.execute(
                select(rate_limits.c.count, rate_limits.c.expires_at).where(
                    rate_limits.c.name == key
                )
            ).one_or_none()
        if row is None or row.expires_at <= self._clock():
            return None
        count, expires_at = row  # (Row.count is a tuple method, not the column)
        return int(count), float(expires_at)

    def get(self, key: str) -> int:
        window = self._window(key)
        return 0 if window is None else window[0]

    def get_expiry(self, key: str) -> float:
        window = self._window(key)
        return self._clock() if window is None else window[1]

    def check(self) -> bool:
        try:
            with self.engine.connect() as conn:
                conn.execute(select(1))
        except SQLAlchemyError:
            return False
        return True

    def reset(self) -> int | None:
        with self._connection(write=True) as conn:
            deleted: int = conn.execute(delete(rate_limits)).rowcount
        return deleted

    def clear(self, key: str) -> None:
        with self._connection(write=True) as conn:
            conn.execute(delete(rate_limits).where(rate_limits.c.name == key))


class SubmitRateExceeded(Exception):
    """A submit over its key's rate; `retry_after` is the seconds until the window ends."""

    def __init__(self, rate: str, retry_after: float) -> None:
        super().__init__(f"over the rate {rate}")
        self.rate = rate
        self.retry_after = retry_after


class SubmitRates:
    """Whether a key may submit now, under its rate ("60/minute"): each call counts one
    submit in the current window."""

    def __init__(self, engine: Engine, clock: Callable[[], float] = time.time) -> None:
        self._storage = SqlRateStorage(engine, clock)
        self._limiter = FixedWindowRateLimiter(self._storage)
        self._clock = clock
        self._parsed: dict[str, RateLimitItem] = {}

    def hit(self, key_id: str, rate: str) -> float | None:
        """None when the submit is within `rate`; else the seconds until the window ends (the
        Retry-After to answer). ValueError: `rate` is not in the `limits` notation."""
        item = self._parsed.get(rate)
        if item is None:
            item = self._parsed[rate] = parse(rate)
        if self._limiter.hit(item, "submit", key_id):
            return None
        reset = self._limiter.get_window_stats(item, "submit", key_id).reset_time
        return max(reset - self._clock(), 0.0)

    def admit(self, conn: Any, key_id: str, rate: str) -> None:
        """Count a submit in the transaction of `conn` (the submit's own: see
        SqlJobStore.submit's `admit`); SubmitRateExceeded when it is over `rate`."""
        with self._storage.within(conn):
            wait = self.hit(key_id, rate)
        if wait is not None:
            raise SubmitRateExceeded(rate, wait)


def check_rate(rate: str) -> str:
    """`rate` when the `limits` library can read it ("60/minute", "1000 per day");
    ValueError naming the notation otherwise."""
    try:
        parse(rate)
    except ValueError:
        raise ValueError(
            f"{rate!r} is not a rate: write it as COUNT/PERIOD, e.g. 60/minute, 10/second, 1000/day"
        ) from None
    return rate
