"""The playground and console pages: served with their assets under a strict
Content-Security-Policy, and written so that the policy holds (no inline script or style,
no markup built from strings, nothing from another origin)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from retouch.web.pages import (
    ASSETS_URL,
    PAGES,
    STATIC_DIR,
    content_security_policy,
    output_origins,
)

from ..inprocess import app_client

SCRIPTS = sorted(STATIC_DIR.glob("*.js"))
# What would need 'unsafe-inline'/'unsafe-eval', or could turn text into markup.
UNSAFE_JS = re.compile(
    r"\.innerHTML|\.outerHTML|insertAdjacentHTML|document\.write|\beval\(|new Function\b"
    r"|\.style\.|setAttribute\(\s*[\"']style[\"']|\.cssText"
)
# An absolute URL: only the SVG namespace (a name, never fetched) is allowed.
ABSOLUTE_URL = re.compile(r"""(?:https?:)?//[a-zA-Z0-9][^\s'"<>()`]*""")
SVG_NAMESPACE = "http://www.w3.org/2000/svg"


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    with app_client(tmp_path / "data") as opened:
        yield opened


class _Page(HTMLParser):
    """A page's script and stylesheet URLs, and what the policy would refuse in it."""

    def __init__(self) -> None:
        super().__init__()
        self.scripts: list[str] = []
        self.links: list[str] = []
        self.inline: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        for name, _ in attrs:
            if name.startswith("on") or name == "style":
                self.inline.append(f"<{tag} {name}=…>")
        if tag == "style":
            self.inline.append("<style>")
        if tag == "script":
            if found.get("src"):
                self.scripts.append(str(found["src"]))
            else:
                self.inline.append("<script> without src")
        if tag == "link" and found.get("href"):
            self.links.append(str(found["href"]))


def _parsed(html: str) -> _Page:
    parser = _Page()
    parser.feed(html)
    return parser


@pytest.mark.parametrize("path", sorted(PAGES))
def test_each_page_is_served_with_the_strict_policy(client: TestClient, path: str) -> None:
    answer = client.get(path)
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "text/html; charset=utf-8"
    policy = answer.headers["content-security-policy"]
    assert policy == content_security_policy()
    directives = dict(part.split(" ", 1) for part in policy.split("; "))
    assert directives["default-src"] == "'none'"
    assert directives["script-src"] == "'self'"
    assert directives["connect-src"] == "'self'"
    assert directives["frame-ancestors"] == "'none'"
    assert "unsafe" not in policy
    assert answer.headers["x-content-type-options"] == "nosniff"
    assert answer.headers["referrer-policy"] == "no-referrer"


@pytest.mark.parametrize("path", sorted(PAGES))
def test_every_asset_a_page_loads_is_served_with_the_policy(client: TestClient, path: str) -> None:
    page = _parsed(client.get(path).text)
    assert page.scripts and page.links
    for url in page.scripts + page.links:
        assert url.startswith("ui/"), f"{path}: {url} is not one of ours, relative to the page"
        answer = client.get(f"/{url}")
        assert answer.status_code == 200, url
        assert answer.headers["content-security-policy"] == content_security_policy()
        assert answer.headers["x-content-type-options"] == "nosniff"
    for url in page.scripts:
        assert client.get(f"/{url}").headers["content-type"].startswith("text/javascript")


@pytest.mark.parametrize("name", sorted(PAGES.values()))
def test_no_page_has_inline_script_or_style(name: str) -> None:
    assert _parsed((STATIC_DIR / name).read_text()).inline == []


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda path: path.name)
def test_no_script_builds_markup_from_strings_or_sets_inline_styles(script: Path) -> None:
    assert UNSAFE_JS.findall(script.read_text()) == []


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda path: path.name)
def test_every_module_import_names_a_served_file(script: Path) -> None:
    imported = re.findall(r"""from\s+["']([^"']+)["']""", script.read_text())
    for target in imported:
        assert target.startswith("./") and target.endswith(".js"), target
        assert (STATIC_DIR / target).is_file(), f"{script.name} imports missing {target}"


@pytest.mark.parametrize("asset", sorted(STATIC_DIR.iterdir()), ids=lambda path: path.name)
def test_no_asset_names_another_origin(asset: Path) -> None:
    text = asset.read_text().replace(SVG_NAMESPACE, "")
    assert ABSOLUTE_URL.findall(text) == []


def test_a_missing_asset_is_the_api_s_404(client: TestClient) -> None:
    answer = client.get(f"{ASSETS_URL}/nothing-here.js")
    assert answer.status_code == 404
    assert answer.json()["error_code"] == 404002


def test_output_images_elsewhere_are_allowed_as_images_only() -> None:
    def presign(name: str, ttl_seconds: int) -> str:
        return f"https://bucket.s3.eu-west-1.amazonaws.com/{name}?X-Amz-Signature=abc"

    origins = output_origins("https://edit.example.com/base/", presign)
    assert origins == ["https://edit.example.com", "https://bucket.s3.eu-west-1.amazonaws.com"]
    policy = content_security_policy(origins)
    directives = dict(part.split(" ", 1) for part in policy.split("; "))
    assert directives["img-src"].split() == [
        "'self'",
        "blob:",
        "data:",
        "https://bucket.s3.eu-west-1.amazonaws.com",
        "https://edit.example.com",
    ]
    assert directives["connect-src"] == "'self'"
    assert output_origins(None, None) == []


def test_the_public_base_url_s_origin_reaches_the_served_policy(tmp_path: Path) -> None:
    with app_client(tmp_path / "data", public_base_url="https://edit.example.com") as client:
        policy = client.get("/console").headers["content-security-policy"]
    assert "img-src 'self' blob: data: https://edit.example.com;" in policy
