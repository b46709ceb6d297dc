"""Counting HTTP requests by route template, method and status, with their durations, as
the finished-requests middleware (api/finished_requests.py) hands them over: per request a
dict lookup, one counter increment and one histogram observation.

The route template is the matched route's (`/v1/requests/{request_id}/status`, never the raw
path: one series per route, not per job), read from the scope once routing is done (FastAPI
puts the route there); a path no route matched is `unmatched`."""

from __future__ import annotations

from typing import Final

from prometheus_client.metrics import Counter, Histogram
from starlette.types import Scope

from retouch.metrics.registry import HTTP_DURATION, HTTP_REQUESTS

UNMATCHED: Final = "unmatched"


class RequestMetrics:
    """An observer of api/finished_requests.py: counts the request and its duration."""

    def __init__(self) -> None:
        # The labelled children, made once per (route, method, status): `.labels()` costs a
        # lock and a tuple of strings each time.
        self._children: dict[tuple[str, str, int], tuple[Counter, Histogram]] = {}

    def __call__(self, scope: Scope, status: int, seconds: float) -> None:
        route = scope.get("route")
        template = getattr(route, "path", UNMATCHED) if route is not None else UNMATCHED
        key = (template, scope["method"], status)
        children = self._children.get(key)
        if children is None:
            children = self._children.setdefault(key, self._make(*key))
        children[0].inc()
        children[1].observe(seconds)

    @staticmethod
    def _make(template: str, method: str, status: int) -> tuple[Counter, Histogram]:
        return (
            HTTP_REQUESTS.labels(route=template, method=method, status=str(status)),
            HTTP_DURATION.labels(route=template, method=method),
        )
