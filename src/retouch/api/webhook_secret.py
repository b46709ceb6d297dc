"""The webhook signing secret of the calling key: read it, or rotate it."""

from __future__ import annotations

from fastapi import APIRouter
from starlette.concurrency import run_in_threadpool

from retouch.api.errors import NOT_FOUND, ApiError
from retouch.api.routes import Authenticated

router = APIRouter(tags=["webhooks"])


async def _secret(caller: Authenticated, *, rotate: bool) -> dict[str, str]:
    keys = caller.state.keys
    change = keys.rotate_webhook_secret if rotate else keys.webhook_secret
    try:
        secret = await run_in_threadpool(change, caller.key_id)
    except KeyError:
        # Only when the key was deleted between authentication and here.
        raise ApiError(404, NOT_FOUND, "API key not found") from None
    return {"secret": secret}


@router.get("/v1/webhooks/secret")
async def webhook_secret(caller: Authenticated) -> dict[str, str]:
    """The `whsec_…` secret that signs this key's webhooks (Standard Webhooks); made on first
    use, the same until rotated."""
    return await _secret(caller, rotate=False)


@router.post("/v1/webhooks/secret")
async def rotate_webhook_secret(caller: Authenticated) -> dict[str, str]:
    """Replace this key's webhook secret and answer the new one: every delivery attempt from
    now on, retries of earlier requests included, is signed with it."""
    return await _secret(caller, rotate=True)
