"""The workers alive now."""

from __future__ import annotations

import functools

from fastapi import APIRouter
from fastapi.responses import Response

from retouch.api.dependencies import Authenticated, Caller, key_record, send, store_read
from retouch.api.errors import error_responses
from retouch.contract.bodies import WorkerInfo, WorkerList
from retouch.responses import worker_infos

router = APIRouter(tags=["operations"])

# A worker that has not reported for this long is not listed (it reports every few seconds).
WORKER_ALIVE_SECONDS = 30.0


@router.get("/v1/workers", response_model=WorkerList, responses=error_responses(401))
async def list_workers(caller: Authenticated) -> Response:
    """Workers alive now: what each serves, its engines, and its memory. `current_job` names
    another key's request only to an admin key."""
    state = caller.state
    records = await store_read(
        state, functools.partial(state.store.workers, seen_within=WORKER_ALIVE_SECONDS)
    )
    infos = worker_infos(records)
    if not (await key_record(state, caller.key_id)).is_admin:
        infos = await store_read(state, functools.partial(_own_jobs_only, caller, infos))
    return send(WorkerList(workers=infos))


def _own_jobs_only(caller: Caller, infos: list[WorkerInfo]) -> list[WorkerInfo]:
    """The workers with the request ids of other keys' jobs left out. Blocking: reads."""
    store = caller.state.store
    return [
        info
        if info.current_job is None or store.get(info.current_job, key_id=caller.key_id)
        else info.model_copy(update={"current_job": None})
        for info in infos
    ]
