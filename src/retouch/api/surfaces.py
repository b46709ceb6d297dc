"""The protocols besides the contract's own that the API speaks, each a package of its own:
their routers, their error forms by path prefix, and the webhook body of a job by the surface
it came through (jobs.surface)."""

from __future__ import annotations

from collections.abc import Callable

from fastapi import APIRouter

from retouch.api.errors import ErrorForms
from retouch.api.fal import bodies as fal_bodies
from retouch.api.fal.errors import fal_error
from retouch.api.fal.routes import router as fal_router
from retouch.api.fal.routes import run_router as fal_run_router
from retouch.api.replicate import bodies as replicate_bodies
from retouch.api.replicate.errors import replicate_error
from retouch.api.replicate.routes import router as replicate_router
from retouch.api.state import AppState
from retouch.jobs.models import Job

ROUTERS: tuple[APIRouter, ...] = (fal_router, fal_run_router, replicate_router)
ERROR_FORMS: ErrorForms = {
    f"{fal_bodies.PREFIX}/": fal_error,
    f"{fal_bodies.RUN_PREFIX}/": fal_error,
    f"{replicate_bodies.PREFIX}/": replicate_error,
}


def webhook_body(state: AppState) -> Callable[[str, Job], str]:
    """`body_of` for the webhook dispatcher: each job's webhook in its surface's shape.
    Blocking (Replicate's reads the job's input and logs)."""

    def body_of(base: str, job: Job) -> str:
        if job.surface in (fal_bodies.SURFACE, fal_bodies.SYNC_SURFACE):
            return fal_bodies.webhook(state, base, job).to_json().decode()
        if job.surface == replicate_bodies.SURFACE:
            return replicate_bodies.current(state, base, job).to_json().decode()
        return state.responses.result(base, job).to_json().decode()

    return body_of
