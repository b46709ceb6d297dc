"""The access log (RETOUCH_ACCESS_LOG=true): one info line per HTTP request on the
`retouch.access` logger, with its method, path, status, duration, client address, and the
request id when the handler bound one (log_context). A pure ASGI middleware: starlette's
BaseHTTPMiddleware runs every request through a task group and memory streams, which would
cost a status poll a large share of its time."""

from __future__ import annotations

import logging
import time
import urllib.parse

from starlette.types import ASGIApp, Message, Receive, Scope, Send

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


class AccessLogMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        # Starlette answers 500 for an error raised before any answer (and raises it on).
        status = 500

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            if log.isEnabledFor(logging.INFO):
                _log(scope, status, (time.perf_counter() - started) * 1000)


def _log(scope: Scope, status: int, milliseconds: float) -> None:
    client = scope.get("client")
    fields = {
        "method": scope["method"],
        "path": shown_path(scope),
        "status": status,
        "duration_ms": round(milliseconds, 2),
        "client": client[0] if client else "-",
    }
    # The record's request_id is added by the handler's filter, from the context variable the
    # route bound: the route ran in this task, so its binding is seen here.
    log.info(_MESSAGE, fields, extra=fields)
