"""What the API and the worker need of a file store, so a local folder and an S3-compatible
bucket are interchangeable. Names are `<request id>/<file>`, checked by `is_valid_name`; a
name that fails the check is refused with ValueError by every operation."""

from __future__ import annotations

import errno
import re
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Final, Protocol

_NAME_PATTERN: Final = re.compile(r"^[0-9a-f-]{36}/[A-Za-z0-9_.-]{1,100}$")
_REQUEST_PATTERN: Final = re.compile(r"^[0-9a-f-]{36}$")
# What a stream hands over at a time: small enough that serving a large file holds little of
# it in memory.
CHUNK_BYTES: Final = 256 * 1024


# A full disk or an exhausted quota: the operating system's, SQLite's ("database or disk is
# full") and PostgreSQL's (disk_full, out_of_memory is not this).
_FULL_ERRNOS: Final = frozenset({errno.ENOSPC, errno.EDQUOT})
POSTGRES_DISK_FULL: Final = "53100"


class StorageFull(OSError):
    """The disk (or quota) that holds files or the job database is full: nothing was kept
    of the write that failed. The API answers 507001; a job fails with `storage_full`."""

    def __init__(self, what: str, cause: BaseException | None = None) -> None:
        super().__init__(errno.ENOSPC, f"no space left for {what}")
        self.what = what
        self.__cause__ = cause


def is_storage_full(error: BaseException) -> bool:
    """Whether `error` (or the driver error a SQLAlchemy error wraps) says the disk is full."""
    if isinstance(error, StorageFull):
        return True
    if isinstance(error, OSError) and error.errno in _FULL_ERRNOS:
        return True
    orig = getattr(error, "orig", None)
    if isinstance(orig, sqlite3.Error):
        code = getattr(orig, "sqlite_errorcode", None)
        return code is not None and code & 0xFF == sqlite3.SQLITE_FULL
    return orig is not None and getattr(orig, "sqlstate", None) == POSTGRES_DISK_FULL


def is_valid_name(name: str) -> bool:
    return bool(_NAME_PATTERN.match(name)) and ".." not in name


def checked_name(name: str) -> str:
    if not is_valid_name(name):
        raise ValueError(f"invalid output name {name!r}")
    return name


def checked_request(request_id: str) -> str:
    """A request id as a folder or prefix: never empty, never a path trick, so deleting a
    request's files cannot reach another's."""
    if not _REQUEST_PATTERN.match(request_id):
        raise ValueError(f"invalid request id {request_id!r}")
    return request_id


@dataclass(frozen=True)
class FileStat:
    size: int
    modified: float
    """Seconds since the epoch: served as Last-Modified and in the ETag."""


class Storage(Protocol):
    """A store of named files. Writes are atomic: a reader sees the whole file or none."""

    def put(self, name: str, data: bytes) -> None:
        """Store the whole file, or nothing: StorageFull when there is no room for it."""
        ...

    def read(self, name: str) -> bytes:
        """The whole file; FileNotFoundError when there is none."""
        ...

    def stat(self, name: str) -> FileStat | None:
        """The file's size and time, None when there is none."""
        ...

    def stream(self, name: str, start: int, end: int) -> Iterator[bytes]:
        """Bytes `start` to `end` (exclusive) in chunks of about CHUNK_BYTES, read as they
        are sent: never the whole file at once."""
        ...

    def delete(self, name: str) -> None:
        """Remove one file; nothing when there is none."""
        ...

    def delete_request(self, request_id: str) -> None:
        """Remove every file of a request."""
        ...

    def keep_only(self, request_id: str, names: list[str]) -> None:
        """Remove a request's files other than `names`: leftovers of attempts that died
        between storing their files and finishing the job."""
        ...

    def probe(self) -> None:
        """Raises unless the store is reachable now (GET /readyz): one cheap operation that
        leaves no file behind."""
        ...
