"""The playground (`/`) and the operator console (`/console`): static HTML pages and plain
ES modules (no build step) served by Retouch itself under a strict Content-Security-Policy.
The pages talk to the API with `fetch()` from the same origin; nothing is loaded from
anywhere else, so they work on a machine without internet."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Final
from urllib.parse import urlsplit

from fastapi import FastAPI
from fastapi.responses import FileResponse
from starlette.responses import Response
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

STATIC_DIR: Final = Path(__file__).parent / "static"
ASSETS_URL: Final = "/ui"
# Page path → its HTML file in STATIC_DIR.
PAGES: Final = {"/": "playground.html", "/console": "console.html"}


def origin_of(url: str) -> str | None:
    """`scheme://host[:port]` of an absolute http(s) URL; None for anything else."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return None
    return f"{parts.scheme}://{parts.netloc}"


# A file name of the shape storage accepts, for signing only (nothing is fetched).
_PROBE_NAME: Final = "00000000-0000-0000-0000-000000000000/origin-probe.png"


def output_origins(
    public_base_url: str | None, presign: Callable[[str, int], str] | None
) -> list[str]:
    """Origins other than the page's own that output image URLs may point at: the public base
    URL's, and the bucket's when results carry presigned URLs (signing is local: no request)."""
    urls = [public_base_url or "", presign(_PROBE_NAME, 60) if presign else ""]
    return [origin for origin in map(origin_of, urls) if origin is not None]


def content_security_policy(image_origins: Iterable[str] = ()) -> str:
    """Scripts, styles and API calls from this origin only; no inline script or style, no
    plugins, no framing. Images also from `blob:` (previews of files before their upload),
    `data:` (sync-mode outputs) and `image_origins`: where output URLs point when they are
    not ours (RETOUCH_PUBLIC_BASE_URL, an S3 bucket's presigned URLs)."""
    images = " ".join(["'self'", "blob:", "data:", *sorted(set(image_origins))])
    return "; ".join(
        [
            "default-src 'none'",
            "script-src 'self'",
            "style-src 'self'",
            f"img-src {images}",
            "connect-src 'self'",
            "font-src 'self'",
            "manifest-src 'self'",
            "base-uri 'none'",
            "form-action 'none'",
            "frame-ancestors 'none'",
        ]
    )


def security_headers(image_origins: Iterable[str] = ()) -> dict[str, str]:
    return {
        "Content-Security-Policy": content_security_policy(image_origins),
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
        "Cross-Origin-Opener-Policy": "same-origin",
        # Revalidated on every load (ETag): an upgraded server's pages show at once.
        "Cache-Control": "no-cache",
    }


class _SecuredStaticFiles(StaticFiles):
    """StaticFiles whose every answer carries the pages' security headers."""

    def __init__(self, *, directory: Path, headers: dict[str, str]) -> None:
        super().__init__(directory=directory)
        self._headers = headers

    def file_response(
        self,
        full_path: str | os.PathLike[str],
        stat_result: os.stat_result,
        scope: Scope,
        status_code: int = 200,
    ) -> Response:
        response = super().file_response(full_path, stat_result, scope, status_code)
        response.headers.update(self._headers)
        return response


def install_web(app: FastAPI, image_origins: Iterable[str] = ()) -> None:
    """Serve the pages and their assets (under /ui). Not in the OpenAPI document."""
    headers = security_headers(image_origins)
    app.mount(
        ASSETS_URL, _SecuredStaticFiles(directory=STATIC_DIR, headers=headers), name="web-assets"
    )
    for path, name in PAGES.items():
        _add_page(app, path, STATIC_DIR / name, headers)


def _add_page(app: FastAPI, path: str, file: Path, headers: dict[str, str]) -> None:
    async def page() -> FileResponse:
        return FileResponse(file, media_type="text/html; charset=utf-8", headers=headers)

    app.add_api_route(path, page, methods=["GET"], include_in_schema=False, name=file.stem)
