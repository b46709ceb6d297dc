"""Counting HTTP requests by route template, method and status, with their durations: a pure
ASGI middleware (starlette's BaseHTTPMiddleware would cost a status poll a large share of its
time), whose per-request work is a dict lookup, one counter increment and one histogram
observation.

The route template is the matched route's (`/v1/requests/{request_id}/status`, never the raw
path: one series per route, not per job), read from the scope once routing is done (FastAPI
puts the route there); a path no route matched is `unmatched`."""

from __future__ import annotations

import time
from typing import Final

from prometheus_client.metrics import Counter, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from retouch.metrics.registry import HTTP_DURATION, HTTP_REQUESTS

UNMATCHED: Final = "unmatched"


class MetricsMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        # The labelled children, made once per (route, method, status): `.labels()` costs a
        # lock and a tuple of strings each time.
        self._children: dict[tuple[str, str, int], tuple[Counter, Histogram]] = {}

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
            route = scope.get("route")
            template = getattr(route, "path", UNMATCHED) if route is not None else UNMATCHED
            key = (template, scope["method"], status)
            children = self._children.get(key)
            if children is None:
                children = self._children.setdefault(key, self._make(*key))
            children[0].inc()
            children[1].observe(time.perf_counter() - started)

    @staticmethod
    def _make(template: str, method: str, status: int) -> tuple[Counter, Histogram]:
        return (
            HTTP_REQUESTS.labels(route=template, method=method, status=str(status)),
            HTTP_DURATION.labels(route=template, method=method),
        )
