"""/docs and /redoc work offline: every asset they load is served by the API itself."""

from __future__ import annotations

import re
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from starlette.testclient import TestClient

from ..inprocess import APP_CLIENT_BASE, app_client

# Any absolute URL (http(s) or protocol-relative) in a page's markup or inline script.
ABSOLUTE_URL = re.compile(r"""(?:https?:)?//[^\s'"<>()]+""")


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    with app_client(tmp_path / "data") as opened:
        yield opened


class _Assets(HTMLParser):
    """The URLs a page loads: script src, stylesheet and icon href, ReDoc's spec-url."""

    def __init__(self) -> None:
        super().__init__()
        self.scripts: list[str] = []
        self.styles: list[str] = []
        self.icons: list[str] = []
        self.specs: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = {name: value or "" for name, value in attrs}
        rel = found.get("rel", "").split()
        if tag == "script" and found.get("src"):
            self.scripts.append(found["src"])
        elif tag == "link" and "stylesheet" in rel:
            self.styles.append(found["href"])
        elif tag == "link" and "icon" in rel:
            self.icons.append(found["href"])
        elif tag == "redoc":
            self.specs.append(found["spec-url"])


def page_assets(html: str) -> _Assets:
    parser = _Assets()
    parser.feed(html)
    parser.close()
    return parser


def assert_same_origin(html: str) -> None:
    for url in ABSOLUTE_URL.findall(html):
        parts = urlsplit(url if not url.startswith("//") else f"http:{url}")
        origin = f"{parts.scheme}://{parts.netloc}"
        assert origin == APP_CLIENT_BASE, f"page refers to another host: {url}"


@pytest.mark.parametrize("path", ["/docs", "/redoc"])
def test_docs_pages_load_only_their_own_assets(client: TestClient, path: str) -> None:
    page = client.get(path)
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert_same_origin(page.text)

    assets = page_assets(page.text)
    assert assets.scripts, "the page loads no script"
    if path == "/docs":
        assert assets.styles, "Swagger UI loads no stylesheet"
        # The inline script hands Swagger UI the document and keeps the key across reloads.
        assert "url: '/openapi.json'" in page.text
        assert '"persistAuthorization": true' in page.text
    else:
        assert assets.specs == ["/openapi.json"]

    expected = (
        [(url, ("text/javascript", "application/javascript")) for url in assets.scripts]
        + [(url, ("text/css",)) for url in assets.styles]
        + [(url, ("image/",)) for url in assets.icons]
    )
    for url, types in expected:
        assert url.startswith("/") and not url.startswith("//"), url
        response = client.get(url)
        assert response.status_code == 200, f"{url}: {response.status_code}"
        assert response.headers["content-type"].startswith(types), (
            f"{url}: {response.headers['content-type']}"
        )
        assert len(response.content) > 1000, f"{url} is suspiciously small"


def test_docs_assets_are_not_in_the_openapi_document(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    assert not [path for path in paths if path.startswith(("/docs", "/redoc"))]


def test_a_missing_asset_answers_the_error_envelope(client: TestClient) -> None:
    response = client.get("/docs/assets/nope.js")
    assert response.status_code == 404
    assert set(response.json()) >= {"error_code", "error_message"}
