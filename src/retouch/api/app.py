"""The ASGI application."""

from __future__ import annotations

from fastapi import FastAPI

from retouch.api.body_limit import BodyLimitMiddleware
from retouch.api.errors import install_error_handlers
from retouch.api.routes import router
from retouch.api.state import AppState
from retouch.api.views import Views
from retouch.config import Settings
from retouch.services import Services, describe_engine, open_services


def create_app(settings: Settings, services: Services | None = None) -> FastAPI:
    services = services or open_services(settings)
    app = FastAPI(
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
        engine_description=describe_engine(settings),
    )
    install_error_handlers(app)
    app.include_router(router)
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)
    return app
