"""Log lines carry the request id they are about (as cog binds `prediction_id`): it is bound in
a context variable while a worker runs a job or the API serves a request about one job, and a
filter on the handler adds it to every record, from our loggers and libraries' alike.

Lines are text by default, or one JSON object each (RETOUCH_LOG_FORMAT=json) for a log
pipeline that parses them: its fields are the record's (time, level, logger, request_id,
message) and any `extra=` a caller gives (the access log's method, path, status…)."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Literal

from pythonjsonlogger.json import JsonFormatter

REQUEST_ID: ContextVar[str | None] = ContextVar("request_id", default=None)
FORMAT = "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"
LogFormat = Literal["text", "json"]
# The JSON line's fields in this order, then the record's extras; the time is ISO 8601 UTC.
JSON_FIELDS = ("levelname", "name", "request_id", "message")
JSON_NAMES = {"levelname": "level", "name": "logger"}


def bind_request_id(request_id: str) -> None:
    """For the rest of this context: an API request's task, which ends with the request."""
    REQUEST_ID.set(request_id)


@contextmanager
def request_id_bound(request_id: str) -> Iterator[None]:
    """For the duration of the block: a worker's job, on a thread that runs many."""
    token = REQUEST_ID.set(request_id)
    try:
        yield
    finally:
        REQUEST_ID.reset(token)


class RequestIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = REQUEST_ID.get() or "-"
        return True


def formatter(log_format: LogFormat) -> logging.Formatter:
    if log_format == "json":
        return JsonFormatter(JSON_FIELDS, rename_fields=JSON_NAMES, timestamp="time")
    return logging.Formatter(FORMAT)


def configure_logging(log_format: LogFormat = "text", level: int = logging.INFO) -> None:
    """Log to standard error, each line with its request id (`-` outside of one)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(RequestIdFilter())
    handler.setFormatter(formatter(log_format))
    logging.basicConfig(level=level, handlers=[handler], force=True)
