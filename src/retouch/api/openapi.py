"""The OpenAPI document, made truthful where FastAPI cannot know: the bearer scheme on every
route that authenticates (our one flat dependency is not a FastAPI security class, which
would cost a sub-dependency on every status poll), and the endpoint id's three path segments
limited to the ids this server serves (anything else answers 400001)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from fastapi import APIRouter, FastAPI
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute

from retouch.api.dependencies import AUTHENTICATES_ITSELF, authenticate, authenticate_admin

BEARER_SCHEME = "bearerAuth"


def _authenticates(route: APIRoute) -> bool:
    return route.endpoint in AUTHENTICATES_ITSELF or any(
        dependency.call in (authenticate, authenticate_admin)
        for dependency in route.dependant.dependencies
    )


# The path parameters that together name an endpoint id: owner/model/task.
ENDPOINT_SEGMENTS = ("owner_name", "model_name", "task")


def _limit_endpoint_segments(document: dict[str, Any], endpoint_ids: Iterable[str]) -> None:
    # The documented route has three segments; ids of other depths use an undocumented one.
    served = [
        parts
        for parts in (endpoint_id.split("/") for endpoint_id in endpoint_ids)
        if len(parts) == len(ENDPOINT_SEGMENTS)
    ]
    if not served:
        return
    allowed = {
        name: sorted({parts[index] for parts in served})
        for index, name in enumerate(ENDPOINT_SEGMENTS)
    }
    for path in document["paths"].values():
        for operation in path.values():
            for parameter in operation.get("parameters", []):
                if parameter["in"] == "path" and parameter["name"] in allowed:
                    parameter["schema"]["enum"] = allowed[parameter["name"]]
                    parameter["description"] = (
                        "A part of a served endpoint id (GET /v1/models lists them)"
                    )


def install_openapi(
    app: FastAPI, routers: Iterable[APIRouter], endpoint_ids: Iterable[str]
) -> None:
    """`routers`: those the app includes. Operation ids are the handlers' names (see create_app),
    which is how an operation of the document is matched to its route."""
    authenticated = {
        route.name
        for router in routers
        for route in router.routes
        if isinstance(route, APIRoute) and _authenticates(route)
    }

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        document = get_openapi(
            title=app.title,
            version=app.version,
            description=app.description,
            routes=app.routes,
        )
        document.setdefault("components", {})["securitySchemes"] = {
            BEARER_SCHEME: {
                "type": "http",
                "scheme": "bearer",
                "description": "An API key: rtk_… (`retouch keys create --name NAME`)",
            }
        }
        for path in document["paths"].values():
            for operation in path.values():
                if operation.get("operationId") in authenticated:
                    operation["security"] = [{BEARER_SCHEME: []}]
        _limit_endpoint_segments(document, endpoint_ids)
        app.openapi_schema = document
        return document

    app.openapi = openapi  # type: ignore[method-assign]
