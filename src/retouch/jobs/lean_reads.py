"""One SQLAlchemy SELECT run on the driver directly, for the read of every status poll.

Through SQLAlchemy the statement costs several times the database's own work (the execute
machinery, the result's metadata, the Row; on PostgreSQL also the cursor's description of 21
columns), more than the rest of a poll. Here it is compiled once and run on the driver:

- SQLite: on plain sqlite3 connections that `database.sqlite_reader` opens (the engine's
  settings, read-only), each taken from a free list for one read, so the event loop's reads
  keep reusing one and concurrent readers (threads) each get their own; no pool, no Row.
- PostgreSQL: on a connection of the engine's pool, as any read (checked out with its ping,
  in autocommit), through the driver's cursor, without SQLAlchemy's Result.

Errors are raised as SQLAlchemy's, so the API answers them as it does any other read's (503
while the database is locked or unreachable).
"""

from __future__ import annotations

import functools
import sqlite3
from collections import namedtuple
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, cast

from sqlalchemy import Engine, Select
from sqlalchemy.exc import DBAPIError

from retouch.jobs.database import sqlite_reader

if TYPE_CHECKING:
    import psycopg

# namedtuple called through a name: mypy types a direct call only with literal field names.
_tuple_type: Callable[[Sequence[str]], Any] = functools.partial(namedtuple, "Row")

Rows = list[tuple[Any, ...]]


class LeanQuery(Protocol):
    def rows(self, *values: Any) -> Rows:
        """Every row, for the parameters named at construction, in that order."""
        ...

    def row(self, values: Iterable[Any]) -> Any:
        """A row that answers by column name, as SQLAlchemy's do (Job.from_row reads it so)."""
        ...

    def close(self) -> None: ...


class _Compiled:
    """`statement` compiled for the engine's dialect, with the bound parameters named `params`
    given at each call and the others as the statement holds them. Its rows hold the driver's
    own values: what SQLAlchemy answers for the column types it passes through unconverted
    (strings, integers, floats: tests/unit/jobs/test_lean_reads.py compares them)."""

    def __init__(self, engine: Engine, statement: Select[Any], params: Sequence[str]) -> None:
        dialect = engine.dialect
        compiled = statement.compile(dialect=dialect)
        for name, bind in compiled.binds.items():
            if bind.type.dialect_impl(dialect).bind_processor(dialect) is not None:
                raise TypeError(f"parameter {name} needs SQLAlchemy's conversion")
        self.sql = compiled.string
        self.row: Callable[[Iterable[Any]], Any] = _tuple_type(
            tuple(statement.selected_columns.keys())
        )._make
        self._params = tuple(params)
        constants = compiled.construct_params(dict.fromkeys(params))
        self._positions = compiled.positiontup
        if self._positions is None:  # named parameters (psycopg)
            self._named = constants
        else:  # positional (sqlite3): the order of `params` in the SQL, once
            self._constants = [constants[name] for name in self._positions]
            order = {name: index for index, name in enumerate(params)}
            self._slots = [
                (at, order[name]) for at, name in enumerate(self._positions) if name in order
            ]

    def arguments(self, values: Sequence[Any]) -> Any:
        if self._positions is None:
            return {**self._named, **dict(zip(self._params, values, strict=True))}
        arguments = self._constants.copy()
        for at, index in self._slots:
            arguments[at] = values[index]
        return arguments


class SqliteQuery:
    def __init__(self, engine: Engine, statement: Select[Any], params: Sequence[str]) -> None:
        self.path = Path(str(engine.url.database))
        self._compiled = _Compiled(engine, statement, params)
        self.row = self._compiled.row
        self._idle: list[sqlite3.Connection] = []
        self._closed = False

    def rows(self, *values: Any) -> Rows:
        sql, arguments = self._compiled.sql, self._compiled.arguments(values)
        try:
            connection = self._idle.pop()
        except IndexError:
            connection = self._open()
        try:
            # Fetched to the end: the statement is reset, so no read snapshot stays open to
            # hold back the WAL's checkpoints.
            rows: Rows = connection.execute(sql, arguments).fetchall()
        except sqlite3.Error as error:
            raise DBAPIError.instance(sql, arguments, error, sqlite3.Error) from error
        finally:
            self._give_back(connection)
        return rows

    def _open(self) -> sqlite3.Connection:
        if self._closed:
            raise sqlite3.ProgrammingError("the store is closed")
        return sqlite_reader(self.path)

    def _give_back(self, connection: sqlite3.Connection) -> None:
        # Appended, then checked: a close() in between closes it there or here (a second
        # close does nothing), never neither. list.append and pop are atomic: no lock.
        self._idle.append(connection)
        if self._closed:
            connection.close()

    def close(self) -> None:
        """Closes the idle connections now, and those in use as their reads end."""
        self._closed = True
        while self._idle:
            try:
                self._idle.pop().close()
            except IndexError:  # a reader took the last one meanwhile
                break


class PostgresQuery:
    def __init__(self, reader: Engine, statement: Select[Any], params: Sequence[str]) -> None:
        self._driver_error = reader.dialect.loaded_dbapi.Error
        self.reader = reader
        self._compiled = _Compiled(reader, statement, params)
        self.row = self._compiled.row

    def rows(self, *values: Any) -> Rows:
        sql, arguments = self._compiled.sql, self._compiled.arguments(values)
        with self.reader.connect() as connection:
            dbapi = connection.connection.dbapi_connection
            cursor = cast("psycopg.Connection[tuple[Any, ...]]", dbapi).cursor()
            try:
                # Prepared on the server as the connection's settings say (psycopg's default:
                # from its 5th run), as SQLAlchemy's statements are: the plan is most of the
                # cost of this statement on the server.
                rows: Rows = cursor.execute(sql, arguments).fetchall()
            except self._driver_error as error:
                # As SQLAlchemy does: a lost connection is not given back to the pool.
                lost = self.reader.dialect.is_disconnect(error, dbapi, None)
                if lost:
                    connection.invalidate(error)
                raise DBAPIError.instance(
                    sql, arguments, error, self._driver_error, connection_invalidated=lost
                ) from error
            finally:
                cursor.close()
        return rows

    def close(self) -> None:
        """Nothing of its own: the connections are the engine's."""


def lean_query(
    engine: Engine, reader: Engine, statement: Select[Any], *params: str
) -> LeanQuery | None:
    """`statement` run on the driver of the store's database; None where it cannot be (SQLite in
    memory, which a second connection would not see). `reader`: the engine the store reads
    through (PostgreSQL: in autocommit)."""
    if engine.dialect.name == "postgresql":
        return PostgresQuery(reader, statement, params)
    database = engine.url.database
    if engine.dialect.name == "sqlite" and database and database != ":memory:":
        return SqliteQuery(engine, statement, params)
    return None
