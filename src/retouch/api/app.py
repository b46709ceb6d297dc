"""The ASGI application."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from fastapi import FastAPI

from retouch.api import uploads, webhook_secret
from retouch.api.body_limit import BodyLimitMiddleware
from retouch.api.changes import ChangeFeed
from retouch.api.errors import install_error_handlers
from retouch.api.routes import router
from retouch.api.state import AppState
from retouch.api.views import Views
from retouch.config import Settings
from retouch.served_endpoints import Endpoint, load_endpoints
from retouch.services import Services, open_services
from retouch.webhooks.dispatcher import WebhookDispatcher


def create_app(
    settings: Settings,
    services: Services | None = None,
    endpoints: list[Endpoint] | None = None,
    on_shutdown: Callable[[], None] | None = None,
) -> FastAPI:
    """on_shutdown runs when the server stops gracefully, before uvicorn exits (`retouch
    serve` stops its worker there: uvicorn re-raises SIGTERM after shutting down, so code
    after uvicorn.run would never run)."""
    services = services or open_services(settings)
    endpoints = endpoints if endpoints is not None else load_endpoints(settings)

    changes = ChangeFeed(services.store)

    @asynccontextmanager
    async def lifespan(started: FastAPI) -> AsyncIterator[None]:
        # Sends due webhooks (left over from before a restart too) while the API runs.
        webhooks = WebhookDispatcher.for_state(started.state.retouch)
        webhooks.start()
        yield
        await webhooks.stop()
        await changes.close()
        if on_shutdown is not None:
            on_shutdown()

    app = FastAPI(
        lifespan=lifespan,
        title="Retouch",
        description=(
            "Self-hosted image editing from a text prompt, speaking the RunComfy Model API "
            "contract of google/nano-banana-2/edit."
        ),
        version="0.1.0",
    )
    app.state.retouch = AppState(
        settings=settings,
        store=services.store,
        keys=services.keys,
        storage=services.storage,
        signer=services.signer,
        views=Views(services.signer, settings.url_ttl_seconds),
        endpoints={endpoint.id: endpoint for endpoint in endpoints},
        changes=changes,
    )
    install_error_handlers(app)
    app.include_router(router)
    app.include_router(uploads.router)
    app.include_router(webhook_secret.router)
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)
    return app
