"""The app as an import string, for `retouch serve --api-processes N`: uvicorn's parent binds
the port and spawns N processes that each import this factory and build their own app (their
own store connections, change feed and webhook dispatcher). Their settings come from the
RETOUCH_* environment, where serve also puts its flags before it starts them."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

from retouch.api.app import create_app
from retouch.config import Settings
from retouch.log_context import configure_logging
from retouch.worker.supervisor import die_with_parent

FACTORY = f"{__name__}:app_from_environment"


def app_from_environment() -> FastAPI:
    """Runs in each API process. uvicorn spawns them (no fork), so logging is set up afresh;
    and uvicorn's parent stops them only when it stops cleanly, so a SIGKILLed serve must not
    leave them answering on its port."""
    die_with_parent()
    from_environment: dict[str, Any] = {}  # mypy, without pydantic's plugin, wants every field
    settings = Settings(**from_environment)
    configure_logging(settings.log_format)
    return create_app(settings)
