"""The contract's routes, the model listing and the signed output files."""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import FileResponse, JSONResponse
from pydantic import BaseModel, ValidationError
from starlette.concurrency import run_in_threadpool

from retouch.api.errors import (
    FORBIDDEN,
    INVALID_INPUT,
    NOT_FOUND,
    OVERLOADED,
    UNAUTHORIZED,
    UNKNOWN_MODEL,
    ApiError,
    invalid_input,
)
from retouch.api.state import AppState
from retouch.contract.endpoints import INPUT_MODELS, input_schema
from retouch.contract.states import STATUS_NAMES, JobState
from retouch.jobs.models import Job, QueueFull
from retouch.media.encode import CONTENT_TYPES, FILE_EXTENSIONS

router = APIRouter()

CONTENT_TYPE_BY_EXTENSION = {FILE_EXTENSIONS[fmt]: CONTENT_TYPES[fmt] for fmt in CONTENT_TYPES}


async def app_state(request: Request) -> AppState:
    state: AppState = request.app.state.retouch
    return state


State = Annotated[AppState, Depends(app_state)]


def base_url(request: Request, state: AppState) -> str:
    if state.settings.public_base_url:
        return state.settings.public_base_url.rstrip("/")
    return str(request.base_url).rstrip("/")


async def key_id(request: Request, state: State) -> str:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise ApiError(
            401,
            UNAUTHORIZED,
            "missing API key: send the header 'Authorization: Bearer <key>'",
            headers={"WWW-Authenticate": "Bearer"},
        )
    found = state.keys.authenticate(token.strip())
    if found is None:
        raise ApiError(
            401,
            UNAUTHORIZED,
            "invalid or revoked API key: create one with `retouch keys create --name NAME`",
            headers={"WWW-Authenticate": "Bearer"},
        )
    return found


KeyId = Annotated[str, Depends(key_id)]


def find_job(state: AppState, request_id: str, owner: str) -> Job:
    job = state.store.get(request_id, key_id=owner)
    if job is None:
        raise ApiError(404, NOT_FOUND, f"request {request_id} not found (or expired)")
    return job


def endpoint_input_model(endpoint: str) -> type[BaseModel]:
    model = INPUT_MODELS.get(endpoint)
    if model is None:
        known = ", ".join(INPUT_MODELS)
        raise ApiError(
            400, UNKNOWN_MODEL, f"unknown model id {endpoint!r}; this server serves: {known}"
        )
    return model


def parse_input(model: type[BaseModel], body: bytes) -> dict[str, Any]:
    try:
        json.loads(body)
    except (ValueError, RecursionError) as error:
        raise ApiError(
            422,
            INVALID_INPUT,
            "invalid input: the body is not valid JSON",
            detail=[{"field": "body", "path": [], "message": f"not valid JSON: {error}"}],
        ) from None
    try:
        return model.model_validate_json(body).model_dump(mode="json")
    except ValidationError as error:
        raise invalid_input([dict(e) for e in error.errors()]) from None


def submit_openapi(endpoint: str) -> dict[str, Any]:
    return {
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": input_schema(endpoint)}},
        }
    }


async def _submit(request: Request, state: AppState, owner: str, endpoint: str) -> dict[str, Any]:
    model = endpoint_input_model(endpoint)
    fields = parse_input(model, await request.body())
    try:
        job = await run_in_threadpool(
            state.store.submit,
            key_id=owner,
            endpoint=endpoint,
            input=fields,
            max_queued=state.settings.max_queued_jobs,
        )
    except QueueFull:
        raise ApiError(
            503,
            OVERLOADED,
            "the queue is full: retry after a few seconds",
            headers={"Retry-After": "5"},
        ) from None
    return state.views.submitted(base_url(request, state), job)


def submit_route(endpoint: str) -> Any:
    async def submit(request: Request, state: State, owner: KeyId) -> dict[str, Any]:
        return await _submit(request, state, owner, endpoint)

    return submit


def add_submit_routes() -> None:
    """One documented route per served endpoint (so /docs shows each input schema), and a
    catch-all that answers 400001 for any other model id."""
    for endpoint in INPUT_MODELS:
        router.add_api_route(
            f"/v1/models/{endpoint}",
            submit_route(endpoint),
            methods=["POST"],
            summary=f"Submit a {endpoint} request",
            openapi_extra=submit_openapi(endpoint),
            tags=["requests"],
        )

    @router.post("/v1/models/{owner_name}/{model_name}/{task}", include_in_schema=False)
    async def submit_unknown(
        request: Request, state: State, owner: KeyId, owner_name: str, model_name: str, task: str
    ) -> dict[str, Any]:
        return await _submit(request, state, owner, f"{owner_name}/{model_name}/{task}")


add_submit_routes()


# The hot paths answer JSONResponse directly: FastAPI's generic encoding of a returned dict
# costs more than the database read.
@router.get("/v1/requests/{request_id}/status", tags=["requests"], response_class=JSONResponse)
async def status(request: Request, request_id: str, state: State, owner: KeyId) -> JSONResponse:
    job = find_job(state, request_id, owner)
    return JSONResponse(state.views.status(base_url(request, state), job))


@router.get("/v1/requests/{request_id}/result", tags=["requests"], response_class=JSONResponse)
async def result(request: Request, request_id: str, state: State, owner: KeyId) -> JSONResponse:
    job = find_job(state, request_id, owner)
    return JSONResponse(state.views.result(base_url(request, state), job))


@router.post("/v1/requests/{request_id}/cancel", status_code=202, tags=["requests"])
async def cancel(request_id: str, state: State, owner: KeyId) -> dict[str, Any]:
    found = await run_in_threadpool(state.store.cancel, request_id, key_id=owner)
    if found is None:
        raise ApiError(404, NOT_FOUND, f"request {request_id} not found (or expired)")
    job, _ = found
    outcome = "cancelled" if job.state is JobState.CANCELLED else "not_cancellable"
    return {"request_id": job.id, "status": STATUS_NAMES[job.state], "outcome": outcome}


@router.get("/v1/models", tags=["models"])
async def list_models(request: Request, state: State, _owner: KeyId) -> dict[str, Any]:
    base = base_url(request, state)
    return {
        "models": [
            {
                "id": endpoint,
                **state.engine_description,
                "schema_url": f"{base}/v1/models/{endpoint}/schema",
            }
            for endpoint in INPUT_MODELS
        ]
    }


@router.get("/v1/models/{endpoint:path}/schema", tags=["models"])
async def model_schema(endpoint: str, state: State, _owner: KeyId) -> dict[str, Any]:
    endpoint_input_model(endpoint)
    return input_schema(endpoint)


@router.get("/v1/files/{request_id}/{filename}", tags=["files"], response_model=None)
async def output_file(
    request_id: str, filename: str, state: State, expires: int = 0, sig: str = ""
) -> FileResponse | JSONResponse:
    name = f"{request_id}/{filename}"
    if not state.storage.is_valid_name(name) or not state.signer.verify(name, expires, sig):
        raise ApiError(
            403,
            FORBIDDEN,
            "bad or expired signature: fetch the request's result again for fresh URLs",
        )
    path = state.storage.path(name)
    content_type = CONTENT_TYPE_BY_EXTENSION.get(path.suffix.lstrip("."))
    if content_type is None or not path.is_file():
        raise ApiError(404, NOT_FOUND, "file not found (it may have been deleted)")
    return FileResponse(
        path,
        media_type=content_type,
        headers={"X-Content-Type-Options": "nosniff", "Cache-Control": "private, max-age=3600"},
    )
