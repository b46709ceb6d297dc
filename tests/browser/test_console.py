"""The operator console in Chromium: an admin key sees the workers, the queue per endpoint,
recent failures by code and every key's activity, refreshed live; a user key is told it
sees only its own work."""

from __future__ import annotations

import os
from pathlib import Path

from playwright.sync_api import Page, expect

from browser.conftest import PageWatch, WebServer
from client_support import SMALL, occupy_worker
from e2e_support import Api, ImageServer

ENDPOINT = "google/nano-banana-2/edit"


def _open_with_key(page: Page, server: WebServer, key: str) -> None:
    page.goto(f"{server.base}/console")
    page.fill("#api-key", key)
    page.click("#key-form button[type=submit]")


def test_an_admin_sees_workers_queue_and_failures_live(
    page: Page, web_server: WebServer, image_server: ImageServer, watch: PageWatch
) -> None:
    api = Api(web_server.base, web_server.user_key)
    failed = api.submit_ok({"prompt": "x", "image_urls": [image_server.url("/gone.png")], **SMALL})
    code = api.wait(failed)["error"]["code"]

    _open_with_key(page, web_server, web_server.admin_key)
    expect(page.locator("#console-notice")).to_be_hidden()
    worker = page.locator("#workers-table tbody tr[data-worker]")
    expect(worker).to_have_count(1)
    expect(worker).to_contain_text(ENDPOINT)
    expect(worker).to_contain_text("RSS")
    expect(worker).to_contain_text("ago")
    expect(page.locator(f'#failures-table tr[data-code="{code}"]')).to_contain_text(failed)

    # While the page stays open: a running job and one queued behind it appear by themselves.
    running = occupy_worker(api, image_server, seconds=7)  # < the 8 s fetch read timeout
    queued = api.submit_ok({"prompt": "x", "image_urls": [image_server.url("/square.png")]})
    row = page.locator(f'#queue-table tr[data-endpoint="{ENDPOINT}"]')
    expect(row.locator(".queued")).to_have_text("1")
    expect(row.locator(".running")).to_have_text("1")
    expect(row.locator(".oldest")).to_contain_text(queued)
    expect(worker.locator(".current-job")).to_have_text(running)
    expect(page.locator(f'#recent-table tr[data-request="{queued}"]')).to_contain_text("in_queue")
    expect(page.locator("#keys-table tr[data-key]").filter(has_text="operator")).to_have_count(1)
    if os.environ.get("RETOUCH_SCREENSHOT_DIR"):
        page.screenshot(path=Path(os.environ["RETOUCH_SCREENSHOT_DIR"]) / "console.png")

    api.cancel(queued)
    expect(row.locator(".queued")).to_have_text("0")
    assert api.wait(running)["status"] == "succeeded"
    expect(worker.locator(".current-job")).to_have_text("idle")
    assert web_server.admin_key not in page.url
    assert web_server.admin_key not in web_server.process.log_text()


def test_a_user_key_is_told_it_sees_only_its_own_work(
    page: Page, web_server: WebServer, image_server: ImageServer
) -> None:
    api = Api(web_server.base, web_server.user_key)
    mine = api.submit_ok({"prompt": "x", "image_urls": [image_server.url("/square.png")], **SMALL})
    _open_with_key(page, web_server, web_server.user_key)
    expect(page.locator("#console-notice")).to_contain_text("not an admin key")
    expect(page.locator("#console-notice")).to_contain_text("retouch keys create --admin")
    expect(page.locator("#queue-table")).to_be_hidden()
    expect(page.locator("#keys-table")).to_be_hidden()
    expect(page.locator("#workers-table tbody tr[data-worker]")).to_have_count(1)
    expect(page.locator(f'#recent-table tr[data-request="{mine}"]')).to_be_visible()


def test_a_bad_key_is_named_and_the_key_stays_out_of_the_url(
    page: Page, web_server: WebServer
) -> None:
    _open_with_key(page, web_server, "rtk_not_a_key")
    expect(page.locator("#console-notice")).to_contain_text("not accepted")
    assert "rtk_" not in page.url


def test_the_console_fits_a_phone(page: Page, web_server: WebServer) -> None:
    page.set_viewport_size({"width": 390, "height": 844})
    _open_with_key(page, web_server, web_server.admin_key)
    expect(page.locator("#workers-table tbody tr[data-worker]")).to_have_count(1)
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
