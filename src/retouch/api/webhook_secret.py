"""The webhook signing secret of the calling key: read it, or rotate it."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from retouch.api.dependencies import Authenticated, send
from retouch.api.errors import ApiError, error_responses
from retouch.contract.bodies import WebhookSecret
from retouch.contract.errors import NOT_FOUND

router = APIRouter(tags=["webhooks"])


async def _secret(caller: Authenticated, *, rotate: bool) -> Response:
    keys = caller.state.keys
    change = keys.rotate_webhook_secret if rotate else keys.webhook_secret
    try:
        secret = await run_in_threadpool(change, caller.key_id)
    except KeyError:
        # Only when the key was deleted between authentication and here.
        raise ApiError(404, NOT_FOUND, "API key not found") from None
    return send(WebhookSecret(secret=secret))


SECRET_ERRORS = error_responses(401, 404)


@router.get("/v1/webhooks/secret", response_model=WebhookSecret, responses=SECRET_ERRORS)
async def get_webhook_secret(caller: Authenticated) -> Response:
    """The `whsec_…` secret that signs this key's webhooks (Standard Webhooks); made on first
    use, the same until rotated."""
    return await _secret(caller, rotate=False)


@router.post("/v1/webhooks/secret", response_model=WebhookSecret, responses=SECRET_ERRORS)
async def rotate_webhook_secret(caller: Authenticated) -> Response:
    """Replace this key's webhook secret and answer the new one: every delivery attempt from
    now on, retries of earlier requests included, is signed with it."""
    return await _secret(caller, rotate=True)
