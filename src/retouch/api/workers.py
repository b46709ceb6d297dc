"""The workers alive now."""

from __future__ import annotations

import functools

from fastapi import APIRouter
from fastapi.responses import Response

from retouch.api.dependencies import Authenticated, send, store_read
from retouch.api.errors import error_responses
from retouch.contract.bodies import WorkerList
from retouch.responses import worker_infos

router = APIRouter(tags=["operations"])

# A worker that has not reported for this long is not listed (it reports every few seconds).
WORKER_ALIVE_SECONDS = 30.0


@router.get("/v1/workers", response_model=WorkerList, responses=error_responses(401))
async def list_workers(caller: Authenticated) -> Response:
    """Workers alive now: what each serves, its engines, and its memory."""
    store = caller.state.store
    records = await store_read(
        caller.state, functools.partial(store.workers, seen_within=WORKER_ALIVE_SECONDS)
    )
    return send(WorkerList(workers=worker_infos(records)))
