"""The served endpoints (models) and each one's input schema."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from retouch.api.dependencies import Authenticated, Caller, base_url, check_endpoint, send
from retouch.api.errors import error_responses
from retouch.api.requests import ANY_ENDPOINT_ID
from retouch.contract.bodies import EngineFacts, InputSchema, ModelList, ServedModel
from retouch.contract.inputs import input_schema
from retouch.engine.registry import describe_kind

router = APIRouter(tags=["models"])


@router.get("/v1/models", response_model=ModelList, responses=error_responses(401))
async def list_models(request: Request, caller: Authenticated) -> Response:
    """Every endpoint this server serves; each speaks the nano-banana-2/edit input."""
    state = caller.state
    base = base_url(request, state)
    return send(
        ModelList(
            models=[
                ServedModel(
                    id=endpoint.id,
                    engine=endpoint.engine,
                    model=endpoint.model or "preview",
                    preview=endpoint.preview,
                    supports=EngineFacts.model_validate(describe_kind(endpoint.engine)),
                    schema_url=f"{base}/v1/models/{endpoint.id}/schema",
                )
                for endpoint in state.endpoints.values()
            ]
        )
    )


@router.get(
    "/v1/models/{owner_name}/{model_name}/{task}/schema",
    response_model=InputSchema,
    responses=error_responses(400, 401, 422),
)
async def get_model_schema(
    owner_name: str, model_name: str, task: str, caller: Authenticated
) -> Response:
    """The endpoint's input as a JSON Schema: every field with its default, enum and bounds."""
    return _schema(caller, f"{owner_name}/{model_name}/{task}")


# After get_model_schema, as the submit routes (see retouch.api.requests.ANY_ENDPOINT_ID).
@router.get(f"{ANY_ENDPOINT_ID}/schema", include_in_schema=False)
async def get_model_schema_any_depth(endpoint_id: str, caller: Authenticated) -> Response:
    """get_model_schema for an endpoint id of any other depth (`owner/model/variant/task`…)."""
    return _schema(caller, endpoint_id)


def _schema(caller: Caller, endpoint: str) -> Response:
    check_endpoint(caller.state, endpoint)
    return send(InputSchema.model_validate(input_schema()))
