"""The ASGI application."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from fastapi import FastAPI

from retouch import __version__
from retouch.api import (
    admin,
    files,
    health,
    metrics,
    models,
    requests,
    surfaces,
    uploads,
    webhook_secret,
    workers,
)
from retouch.api.access_log import log_request
from retouch.api.body_limit import BodyLimitMiddleware
from retouch.api.changes import ChangeFeed
from retouch.api.docs import install_docs
from retouch.api.errors import install_error_handlers
from retouch.api.finished_requests import FinishedRequestsMiddleware, RequestObserver
from retouch.api.openapi import install_openapi
from retouch.api.state import AppState
from retouch.config import Settings
from retouch.jobs.rate_limits import SubmitRates
from retouch.jobs.retention import RetentionSweeper
from retouch.metrics.http import RequestMetrics
from retouch.responses import ResponseBuilder
from retouch.served_endpoints import Endpoint, load_endpoints
from retouch.services import Services, open_services
from retouch.storage.open_storage import presigner
from retouch.web.pages import install_web, output_origins
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
        state: AppState = started.state.retouch
        webhooks = WebhookDispatcher(
            store=state.store,
            keys=state.keys,
            responses=state.responses,
            settings=settings,
            body_of=surfaces.webhook_body(state),
        )
        webhooks.start()
        # Deletes expired results and uploads (one API process of a deployment at a time).
        sweeper = RetentionSweeper(
            state.keys.engine,
            state.storage,
            retain_results=settings.retain_results,
            retain_uploads=settings.retain_uploads,
            interval=settings.retention_sweep_seconds,
        )
        sweeper.start()
        yield
        await asyncio.to_thread(sweeper.stop)
        await webhooks.stop()
        changes.close()
        if on_shutdown is not None:
            on_shutdown()

    app = FastAPI(
        lifespan=lifespan,
        title="Retouch",
        description=(
            "Self-hosted image editing from a text prompt, speaking the RunComfy Model API "
            "contract of google/nano-banana-2/edit."
        ),
        version=__version__,
        # Operation ids are the handlers' names (submit_edit, get_status…): readable in a
        # generated client, and unique because each handler is.
        generate_unique_id_function=lambda route: route.name,
        docs_url=None,  # served offline by install_docs
        redoc_url=None,
    )
    presign = presigner(settings, services.storage)
    app.state.retouch = AppState(
        settings=settings,
        store=services.store,
        keys=services.keys,
        storage=services.storage,
        signer=services.signer,
        responses=ResponseBuilder(services.signer, settings.url_ttl_seconds, presign),
        endpoints={endpoint.id: endpoint for endpoint in endpoints},
        changes=changes,
        rates=SubmitRates(services.keys.engine),
    )
    install_error_handlers(app, surfaces.ERROR_FORMS)
    install_docs(app)
    install_web(app, image_origins=output_origins(settings.public_base_url, presign))
    routers = [
        resource.router
        for resource in (
            requests,
            models,
            files,
            uploads,
            webhook_secret,
            workers,
            admin,
            health,
        )
    ]
    for router in routers:
        app.include_router(router)
    # Outside the OpenAPI document (it describes the contract's surface): see docs/surfaces.md.
    for router in surfaces.ROUTERS:
        app.include_router(router)
    app.state.undocumented_routes = [
        route for router in surfaces.ROUTERS for route in router.routes
    ]
    if settings.metrics:
        app.include_router(metrics.router)  # not in the OpenAPI document
    install_openapi(app, routers, endpoint_ids=[endpoint.id for endpoint in endpoints])
    app.add_middleware(
        BodyLimitMiddleware,
        max_bytes=settings.max_body_bytes,
        timeout_seconds=settings.body_timeout_seconds,
    )
    observers: list[RequestObserver] = []
    if settings.metrics:
        observers.append(RequestMetrics())
    if settings.access_log:
        observers.append(log_request)
    if observers:
        # Added last, so outermost: every answer is seen, the body limit's (413, 408) too.
        app.add_middleware(FinishedRequestsMiddleware, observers=observers)
    return app
