"""SQLite writers of one process queue on the file's write lock in arrival order; readers
never take it, a write inside another fails at once, and the lock is free again however a
write transaction ends."""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, select, text
from sqlalchemy.exc import OperationalError

from retouch.jobs import database
from retouch.jobs.database import open_sqlite, writer
from retouch.jobs.write_lock import FifoLock, NestedWriteError, write_lock_for


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    opened = open_sqlite(tmp_path / "db.sqlite")
    with writer(opened).begin() as conn:
        conn.exec_driver_sql("CREATE TABLE t (x INTEGER)")
    yield opened
    opened.dispose()


def wait_until(condition: Callable[[], bool]) -> None:
    while not condition():
        time.sleep(0.001)


def is_free(path: Path) -> bool:
    """Whether another thread could take the file's write lock right now."""
    lock = write_lock_for(path)
    free: list[bool] = []

    def attempt() -> None:
        free.append(lock.acquire(timeout=0))
        if free[0]:
            lock.release()

    other = threading.Thread(target=attempt)
    other.start()
    other.join()
    return free[0]


def test_waiters_get_the_lock_in_arrival_order() -> None:
    lock = FifoLock()
    assert lock.acquire(timeout=1)
    order: list[int] = []

    def wait_turn(index: int) -> None:
        assert lock.acquire(timeout=60)
        order.append(index)
        lock.release()

    threads = []
    for index in range(6):
        thread = threading.Thread(target=wait_turn, args=(index,))
        thread.start()
        threads.append(thread)
        queued = index + 1
        wait_until(lambda: len(lock._waiters) == queued)  # noqa: B023 (called right here)
    lock.release()
    for thread in threads:
        thread.join()
    assert order == list(range(6))


def test_a_waiter_gives_up_after_its_timeout_and_leaves_the_queue() -> None:
    lock = FifoLock()
    assert lock.acquire(timeout=1)
    outcome: list[bool] = []
    waiter = threading.Thread(target=lambda: outcome.append(lock.acquire(timeout=0.01)))
    waiter.start()
    waiter.join()
    assert outcome == [False] and not lock._waiters
    lock.release()
    assert lock.acquire(timeout=0)


def test_a_write_inside_another_fails_at_once(engine: Engine, tmp_path: Path) -> None:
    other = open_sqlite(tmp_path / "db.sqlite")
    with pytest.raises(NestedWriteError), writer(engine).begin(), writer(other).begin():
        pass
    assert is_free(tmp_path / "db.sqlite")
    other.dispose()


def test_the_lock_is_free_after_a_commit_or_an_exception(engine: Engine, tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite"
    with writer(engine).begin() as conn:
        conn.execute(text("INSERT INTO t VALUES (1)"))
        assert not is_free(path)
    assert is_free(path)
    with pytest.raises(ZeroDivisionError), writer(engine).begin() as conn:
        conn.execute(text("INSERT INTO t VALUES (2)"))
        raise ZeroDivisionError
    assert is_free(path)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT x FROM t")).scalars().all() == [1]


def test_reads_do_not_wait_for_a_writer(engine: Engine) -> None:
    inside, leave = threading.Event(), threading.Event()

    def hold() -> None:
        with writer(engine).begin() as conn:
            conn.execute(text("INSERT INTO t VALUES (1)"))
            inside.set()
            leave.wait()

    holder = threading.Thread(target=hold)
    holder.start()
    inside.wait()
    with engine.connect() as conn:
        assert conn.execute(select(text("count(*)")).select_from(text("t"))).scalar() == 0
    leave.set()
    holder.join()


def test_another_processs_writer_meets_the_busy_timeout_and_the_lock_is_freed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(database, "SQLITE_BUSY_SECONDS", 0.01)
    path = tmp_path / "db.sqlite"
    engine = open_sqlite(path)
    with writer(engine).begin() as conn:
        conn.exec_driver_sql("CREATE TABLE t (x INTEGER)")
    # Another process's writer, as far as this one can tell: a connection of its own.
    outsider = sqlite3.connect(path, isolation_level=None)
    outsider.execute("BEGIN IMMEDIATE")
    with pytest.raises(OperationalError, match="locked"), writer(engine).begin():
        pass
    assert is_free(path)
    outsider.rollback()
    with writer(engine).begin() as conn:
        conn.execute(text("INSERT INTO t VALUES (1)"))
    outsider.close()
    engine.dispose()


def test_a_writer_waiting_too_long_for_this_processs_writers_fails_as_sqlite_would(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(database, "SQLITE_BUSY_SECONDS", 0.01)
    engine = open_sqlite(tmp_path / "db.sqlite")
    inside, leave = threading.Event(), threading.Event()

    def hold() -> None:
        with writer(engine).begin():
            inside.set()
            leave.wait()

    holder = threading.Thread(target=hold)
    holder.start()
    inside.wait()
    with pytest.raises(OperationalError, match="locked"), writer(engine).begin():
        pass
    leave.set()
    holder.join()
    assert is_free(tmp_path / "db.sqlite")
    engine.dispose()


def test_many_writers_at_once_all_commit(engine: Engine) -> None:
    errors: list[BaseException] = []

    def write(index: int) -> None:
        try:
            for step in range(10):
                with writer(engine).begin() as conn:
                    conn.execute(text("INSERT INTO t VALUES (:x)"), {"x": index * 10 + step})
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=write, args=(i,)) for i in range(32)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    with engine.connect() as conn:
        assert sorted(conn.execute(text("SELECT x FROM t")).scalars()) == list(range(320))
