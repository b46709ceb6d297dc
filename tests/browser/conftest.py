"""The browser tier: Chromium (Debian's, driven by Playwright) against a real `retouch serve`.
Every test here is marked `browser` and `e2e` (`make unit-fast` skips them). The browser is
the one at RETOUCH_TEST_CHROMIUM (`make` installs /usr/bin/chromium when it can): without it
the tests are skipped with a loud reason, and fail under CI=1, where they must run."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from playwright.sync_api import (
    Browser,
    ConsoleMessage,
    Page,
    ViewportSize,
    expect,
    sync_playwright,
)
from playwright.sync_api import Request as BrowserRequest

from e2e_support import RetouchProcess, running_server

HERE = Path(__file__).parent
DEFAULT_CHROMIUM = "/usr/bin/chromium"
# Wide enough for the two-column layout; the phone-width test sets its own.
VIEWPORT: ViewportSize = {"width": 1280, "height": 900}
# How long an `expect` waits (its own default is 5 s): a worker reports its current job every
# few seconds, and a loaded CI machine is slower still.
expect.set_options(timeout=30_000)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if HERE in item.path.parents:
            item.add_marker(pytest.mark.browser)
            item.add_marker(pytest.mark.e2e)


@pytest.fixture(scope="session")
def chromium_path() -> str:
    path = os.environ.get("RETOUCH_TEST_CHROMIUM", DEFAULT_CHROMIUM)
    if not os.access(path, os.X_OK):
        message = (
            f"*** BROWSER TESTS NOT RUN: no Chromium at {path}. Install it (apt-get install "
            "chromium; `make test` does so when it runs as root) or set RETOUCH_TEST_CHROMIUM ***"
        )
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return path


@pytest.fixture
def browser(chromium_path: str) -> Iterator[Browser]:
    """Playwright and Chromium for one test (about a second to start). Not for the session:
    Playwright's sync API keeps an asyncio loop running on this thread while it is started,
    and the other tests this pytest process runs meanwhile need `asyncio.run`."""
    with sync_playwright() as started:
        # Playwright's own browser builds cannot be downloaded here: Debian's, without the
        # sandbox (tests run as root in containers, where Chromium's sandbox cannot start).
        launched = started.chromium.launch(executable_path=chromium_path, args=["--no-sandbox"])
        yield launched
        launched.close()


@dataclass
class WebServer:
    """`retouch serve` with its worker, a user key and an admin key."""

    process: RetouchProcess
    user_key: str
    admin_key: str

    @property
    def base(self) -> str:
        return self.process.base


@pytest.fixture(scope="session")
def web_server(tmp_path_factory: pytest.TempPathFactory, models_cache: Path) -> Iterator[WebServer]:
    data_dir = tmp_path_factory.mktemp("web") / "data"
    with running_server(data_dir, models_cache) as process:
        created = process.cli("keys", "create", "--admin", "--name", "operator")
        admin_key = created.strip().splitlines()[-1]
        assert process.key is not None
        _wait_for_a_worker(process.base, process.key)
        yield WebServer(process, process.key, admin_key)


def _wait_for_a_worker(base: str, key: str, timeout: float = 60) -> None:
    """Until the worker beside `serve` reports (it loads the engine first): a test that
    watches its first job's progress then does not time the engine's load instead."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        answer = httpx.get(f"{base}/v1/workers", headers={"Authorization": f"Bearer {key}"})
        if answer.status_code == 200 and answer.json()["workers"]:
            return
        time.sleep(0.2)
    raise RuntimeError("no worker reported within a minute")


@dataclass
class PageWatch:
    """What a page did that it must not: requests to another origin, console errors (a
    Content-Security-Policy violation is one), uncaught exceptions."""

    origin: str
    foreign_requests: list[str] = field(default_factory=list)
    console_errors: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)

    def on_request(self, request: BrowserRequest) -> None:
        parts = urlsplit(request.url)
        if parts.scheme in ("data", "blob"):
            return
        if f"{parts.scheme}://{parts.netloc}" != self.origin:
            self.foreign_requests.append(request.url)

    def on_console(self, message: ConsoleMessage) -> None:
        if message.type == "error":
            self.console_errors.append(message.text)

    def csp_violations(self) -> list[str]:
        # The browser reports each refusal on the console ("Refused to load …", "… violates
        # the following Content Security Policy directive …"). API error answers (a 422) are
        # console errors too, and expected.
        return [text for text in self.console_errors if "Content Security Policy" in text]

    def on_page_error(self, error: Exception) -> None:
        self.page_errors.append(str(error))


@pytest.fixture
def watch(web_server: WebServer) -> PageWatch:
    return PageWatch(origin=web_server.base)


@pytest.fixture
def page(browser: Browser, watch: PageWatch) -> Iterator[Page]:
    """A fresh browser context (its own storage) and page, watched: a request to another
    origin, or an uncaught error, fails the test that made it."""
    context = browser.new_context(viewport=VIEWPORT, accept_downloads=True)
    context.set_default_timeout(20_000)
    opened = context.new_page()
    opened.on("request", watch.on_request)
    opened.on("console", watch.on_console)
    opened.on("pageerror", watch.on_page_error)
    yield opened
    context.close()
    assert watch.foreign_requests == [], "the page asked another origin"
    assert watch.page_errors == [], "the page threw"
    assert watch.csp_violations() == [], "the Content-Security-Policy refused something"
