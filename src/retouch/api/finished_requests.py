"""Seeing every HTTP request once it is answered, for the access log and the metrics: one
pure ASGI middleware (starlette's BaseHTTPMiddleware runs every request through a task group
and memory streams, which would cost a status poll a large share of its time) that times the
request, notes its status, and hands both to each observer. One layer for all of them: each
layer of its own costs a poll a few microseconds."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from starlette.types import ASGIApp, Message, Receive, Scope, Send

# Called with the request's scope (routed: FastAPI put the matched route in it), its status
# and its duration in seconds, after the answer was sent.
RequestObserver = Callable[[Scope, int, float], None]


class FinishedRequestsMiddleware:
    def __init__(self, app: ASGIApp, observers: Sequence[RequestObserver]) -> None:
        self.app = app
        self.observers = tuple(observers)

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
            seconds = time.perf_counter() - started
            for observe in self.observers:
                observe(scope, status, seconds)
