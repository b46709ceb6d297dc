"""`GET /metrics`: Prometheus' text exposition (version 0.0.4) of the whole host's counters and
histograms (every API process and the worker `serve` runs: retouch.metrics.multiprocess) and
of the job database's gauges, read now. No API key: operators' scrapers have none. With
RETOUCH_METRICS_TOKEN set, `Authorization: Bearer <token>` is required (401001 otherwise).

Not in the OpenAPI document: it is the operator's, not the contract's (like /docs)."""

from __future__ import annotations

import asyncio
import functools
import hmac
import logging
from concurrent.futures import ThreadPoolExecutor
from typing import Final

from fastapi import APIRouter, Request
from fastapi.responses import Response
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4, generate_latest

from retouch.api.dependencies import app_state
from retouch.api.errors import ApiError
from retouch.api.state import AppState
from retouch.api.workers import WORKER_ALIVE_SECONDS
from retouch.contract.errors import UNAUTHORIZED
from retouch.jobs.outage import describe
from retouch.metrics.collectors import DatabaseGauges, DatabaseSnapshot, read_snapshot
from retouch.metrics.multiprocess import exposition_registry

router = APIRouter(tags=["operations"])
log = logging.getLogger(__name__)

METRICS_PATH: Final = "/metrics"
# Under Prometheus' default scrape timeout (10 s); a healthy read takes a millisecond or so.
DATABASE_SECONDS: Final = 2.0
# One thread: while a read hangs (a silent database host), later scrapes time out behind it
# instead of starting a thread each.
_DATABASE: Final = ThreadPoolExecutor(1, thread_name_prefix="metrics-database")
_EXPOSITION: Final = ThreadPoolExecutor(1, thread_name_prefix="metrics-exposition")


def check_token(request: Request, state: AppState) -> None:
    token = state.settings.metrics_token
    if token is None:
        return
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    expected = token.get_secret_value().encode()
    if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), expected):
        raise ApiError(
            401,
            UNAUTHORIZED,
            "metrics need the header 'Authorization: Bearer <RETOUCH_METRICS_TOKEN>'",
            headers={"WWW-Authenticate": "Bearer"},
        )


async def database_snapshot(state: AppState) -> DatabaseSnapshot | None:
    """The job database's gauges now, or None when it did not answer within DATABASE_SECONDS
    (or failed): a scrape is answered either way."""
    loop = asyncio.get_running_loop()
    read = functools.partial(
        read_snapshot, state.keys.engine, state.store, seen_within=WORKER_ALIVE_SECONDS
    )
    try:
        return await asyncio.wait_for(loop.run_in_executor(_DATABASE, read), DATABASE_SECONDS)
    except TimeoutError:
        log.warning("metrics: the job database did not answer within %g s", DATABASE_SECONDS)
    except Exception as error:
        log.warning("metrics: the job database's gauges are left out: %s", describe(error))
    return None


@router.get(METRICS_PATH, include_in_schema=False)
async def get_metrics(request: Request) -> Response:
    state = app_state(request)
    check_token(request, state)
    snapshot = await database_snapshot(state)
    registry = exposition_registry(DatabaseGauges(snapshot))
    # In multiprocess mode this reads every process's files: off the event loop.
    body = await asyncio.get_running_loop().run_in_executor(_EXPOSITION, generate_latest, registry)
    return Response(body, media_type=CONTENT_TYPE_PLAIN_0_0_4)
