"""The interactive API docs (Swagger UI at /docs, ReDoc at /redoc), served with their own
JavaScript and CSS: no CDN, so they work on a machine without internet.

The assets come from the `fastapi-offline` package (it bundles swagger-ui-dist 5 and the
ReDoc 2 standalone build); only its static folder is used, with FastAPI's own page helpers.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

DOCS_URL = "/docs"
REDOC_URL = "/redoc"
ASSETS_URL = "/docs/assets"

# Swagger UI settings (https://swagger.io/docs/open-source-tools/swagger-ui/usage/configuration/).
SWAGGER_UI_PARAMETERS: dict[str, object] = {
    "dom_id": "#swagger-ui",
    "layout": "BaseLayout",
    "deepLinking": True,
    # Keep the key entered under "Authorize" across reloads of the page.
    "persistAuthorization": True,
    "displayRequestDuration": True,
    "tryItOutEnabled": False,
    # No badge fetched from validator.swagger.io: nothing leaves the machine.
    "validatorUrl": None,
}


def assets_dir() -> Path:
    """The folder of swagger-ui-bundle.js, swagger-ui.css, redoc.standalone.js, favicon.png."""
    return Path(str(files("fastapi_offline") / "static"))


def install_docs(app: FastAPI) -> None:
    """Serve /docs, /redoc and their assets under /docs/assets. Create the app with
    `docs_url=None, redoc_url=None` so FastAPI's CDN-based pages are not added too."""
    openapi_url = app.openapi_url or "/openapi.json"
    app.mount(ASSETS_URL, StaticFiles(directory=assets_dir()), name="docs-assets")

    @app.get(DOCS_URL, include_in_schema=False)
    async def swagger_ui(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return get_swagger_ui_html(
            openapi_url=f"{root}{openapi_url}",
            title=f"{app.title} - Swagger UI",
            swagger_js_url=f"{root}{ASSETS_URL}/swagger-ui-bundle.js",
            swagger_css_url=f"{root}{ASSETS_URL}/swagger-ui.css",
            swagger_favicon_url=f"{root}{ASSETS_URL}/favicon.png",
            # HTTP bearer needs no OAuth2 redirect page.
            oauth2_redirect_url=None,
            swagger_ui_parameters=SWAGGER_UI_PARAMETERS,
        )

    @app.get(REDOC_URL, include_in_schema=False)
    async def redoc(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return get_redoc_html(
            openapi_url=f"{root}{openapi_url}",
            title=f"{app.title} - ReDoc",
            redoc_js_url=f"{root}{ASSETS_URL}/redoc.standalone.js",
            redoc_favicon_url=f"{root}{ASSETS_URL}/favicon.png",
            with_google_fonts=False,
        )
