"""The access log (RETOUCH_ACCESS_LOG=true): one info line per HTTP request on the
`retouch.access` logger, with its method, path, status, duration, client address, and the
request id when the handler bound one (log_context); an observer of the finished-requests
middleware (api/finished_requests.py)."""

from __future__ import annotations

import logging
import urllib.parse

from starlette.types import Scope

log = logging.getLogger("retouch.access")
_MESSAGE = "%(method)s %(path)s %(status)d %(duration_ms).2f ms %(client)s"


def shown_path(scope: Scope) -> str:
    """The path, and of its query only the keys: a signed file URL's signature, a webhook
    URL or anything else a client put in a query value stays out of the log."""
    path: str = scope["path"]
    query: bytes = scope.get("query_string", b"")
    if not query:
        return path
    keys = (part.partition(b"=")[0].decode("latin-1") for part in query.split(b"&") if part)
    return f"{path}?{'&'.join(urllib.parse.unquote_plus(key) for key in keys)}"


def log_request(scope: Scope, status: int, seconds: float) -> None:
    """An observer of api/finished_requests.py: the request's line."""
    if not log.isEnabledFor(logging.INFO):
        return
    client = scope.get("client")
    fields = {
        "method": scope["method"],
        "path": shown_path(scope),
        "status": status,
        "duration_ms": round(seconds * 1000, 2),
        "client": client[0] if client else "-",
    }
    # The record's request_id is added by the handler's filter, from the context variable the
    # route bound: the route ran in this task, so its binding is seen here.
    log.info(_MESSAGE, fields, extra=fields)
