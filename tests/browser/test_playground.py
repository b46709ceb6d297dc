"""The playground (`/`) in Chromium against a real server on the preview engine: a whole edit
from two uploaded files to a downloaded output and back from the history, a refused input,
cancelling a queued job, an output used as an input, a phone-width layout, the keyboard."""

from __future__ import annotations

import os
import time
from pathlib import Path

from PIL import Image
from playwright.sync_api import Page, Response, expect

from browser.conftest import WebServer
from client_support import occupy_worker
from e2e_support import Api, ImageServer

ENDPOINT = "google/nano-banana-2/edit"


def open_playground(page: Page, web_server: WebServer) -> Response:
    """Loads `/`, enters the user key, and waits for the form its schema builds."""
    response = page.goto(f"{web_server.base}/")
    assert response is not None
    page.fill("#api-key", web_server.user_key)
    page.press("#api-key", "Enter")
    expect(page.locator("#field-prompt")).to_be_visible()
    return response


def make_image(path: Path, size: tuple[int, int], color: tuple[int, int, int]) -> Path:
    Image.new("RGB", size, color).save(path)
    return path


def output_sizes(page: Page) -> list[list[int]]:
    """The natural sizes of the gallery's images, once every one has loaded. Polled from here:
    wait_for_function polls by evaluating its string in the page, which the page's CSP (no
    'unsafe-eval') refuses; page.evaluate goes through the debugger protocol instead."""
    deadline = time.monotonic() + 30
    while not page.evaluate(
        "[...document.querySelectorAll('#gallery .output img')]"
        ".every((img) => img.complete && img.naturalWidth > 0)"
    ):
        assert time.monotonic() < deadline, "the gallery's images did not load within 30 s"
        page.wait_for_timeout(100)
    sizes: list[list[int]] = page.evaluate(
        "[...document.querySelectorAll('#gallery .output img')]"
        ".map((img) => [img.naturalWidth, img.naturalHeight])"
    )
    return sizes


def open_from_history(page: Page, request_id: str) -> None:
    row = page.locator(f'#history-rows tr[data-request-id="{request_id}"]')
    row.locator(".open-request").click()
    expect(page.locator("#job-request-id")).to_have_text(request_id)


def test_edit_two_uploads_download_and_reopen(
    page: Page, web_server: WebServer, tmp_path: Path
) -> None:
    response = open_playground(page, web_server)
    policy = response.headers["content-security-policy"]
    assert "'unsafe-inline'" not in policy
    assert "script-src 'self'" in policy
    assert "connect-src 'self'" in policy

    page.select_option("#endpoint", ENDPOINT)
    expect(page.locator("#preview-warning")).to_be_visible()
    files = [
        make_image(tmp_path / "first.png", (640, 480), (20, 120, 120)),
        make_image(tmp_path / "second.jpg", (300, 500), (200, 80, 20)),
    ]
    page.set_input_files("#image-files", [str(path) for path in files])
    expect(page.locator('#image-list .image-input[data-state="ready"]')).to_have_count(2)
    expect(page.locator("#image-list")).to_contain_text("640×480")
    page.select_option("#field-aspect_ratio", label="16:9")
    page.select_option("#field-resolution", label="0.5K")
    page.fill("#field-num_images", "2")
    curl = page.locator("#snippet-curl")
    expect(curl).to_contain_text('"num_images": 2')
    expect(curl).to_contain_text("Authorization: Bearer $RETOUCH_API_KEY")
    assert web_server.user_key not in (curl.text_content() or "")

    page.click("#submit")
    expect(page.locator("#job-status")).to_have_text("succeeded", timeout=60_000)
    progress = page.locator("#job-progress")
    expect(progress).to_be_visible()
    assert progress.evaluate("(bar) => bar.value === bar.max && bar.max >= 1")
    expect(page.locator("#gallery .output")).to_have_count(2)
    assert output_sizes(page) == [[688, 384], [688, 384]]
    expect(page.locator("#gallery .output-size").first).to_have_text("688×384")
    expect(page.locator("#job-warnings .notice.warning")).to_contain_text("preview model")
    request_id = page.locator("#job-request-id").inner_text()
    expect(page.locator(f'#history-rows tr[data-request-id="{request_id}"]')).to_be_visible()
    if screenshots := os.environ.get("RETOUCH_SCREENSHOT_DIR"):
        Path(screenshots).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(screenshots) / "playground.png"), full_page=True)

    with page.expect_download() as download_info:
        page.locator("#gallery .output a.download").first.click()
    download = download_info.value
    assert download.suggested_filename == f"{request_id}-0.png"
    saved = tmp_path / download.suggested_filename
    download.save_as(saved)
    with Image.open(saved) as image:
        assert image.size == (688, 384)

    page.reload()
    expect(page.locator("#field-prompt")).to_be_visible()
    open_from_history(page, request_id)
    expect(page.locator("#job-status")).to_have_text("succeeded")
    expect(page.locator("#gallery .output")).to_have_count(2)
    assert output_sizes(page) == [[688, 384], [688, 384]]
    # The inputs this browser sent are kept: the prompt shows, and "Edit again" is offered.
    expect(page.locator("#job-prompt")).to_contain_text("cyberpunk")
    expect(page.locator("#edit-again")).to_be_visible()


def test_refused_input_shows_next_to_its_field(
    page: Page, web_server: WebServer, image_server: ImageServer
) -> None:
    open_playground(page, web_server)
    page.fill("#image-url", image_server.url("/wide.jpg"))
    page.click("#add-image-url")
    items = page.locator("#image-list .image-input")
    expect(items).to_have_count(1)
    # Another origin's image is not shown (the CSP allows only this one): a placeholder.
    expect(items.locator(".thumb.placeholder")).to_have_count(1)
    page.fill("#field-prompt", "   ")
    page.click("#submit")
    expect(page.locator("#error-prompt")).to_contain_text("must not be empty")
    expect(page.locator("#form-errors")).to_contain_text("422001")
    expect(page.locator("#field-prompt")).to_have_attribute("aria-invalid", "true")
    expect(page.locator("#job")).to_be_hidden()


def test_cancel_a_queued_job(page: Page, web_server: WebServer, image_server: ImageServer) -> None:
    api = Api(web_server.base, web_server.user_key)
    open_playground(page, web_server)
    page.fill("#image-url", image_server.url("/square.png"))
    page.click("#add-image-url")
    page.select_option("#field-resolution", label="0.5K")
    busy = occupy_worker(api, image_server, seconds=7)  # < the 8 s fetch read timeout
    try:
        page.click("#submit")
        expect(page.locator("#job-status")).to_have_text("in_queue")
        expect(page.locator("#queue-position")).to_be_visible()
        page.click("#cancel")
        expect(page.locator("#cancel-outcome")).to_contain_text("Cancelled")
        expect(page.locator("#job-status")).to_have_text("cancelled")
        request_id = page.locator("#job-request-id").inner_text()
        assert api.status(request_id).json()["status"] == "cancelled"
        expect(page.locator("#gallery .output")).to_have_count(0)
    finally:
        api.wait(busy)  # the worker is free again for the next test


def test_use_an_output_as_input(
    page: Page, web_server: WebServer, image_server: ImageServer
) -> None:
    api = Api(web_server.base, web_server.user_key)
    request_id = api.submit_ok(
        {
            "prompt": "x",
            "image_urls": [image_server.url("/square.png")],
            "resolution": "0.5K",
            "aspect_ratio": "1:1",
        }
    )
    assert api.wait(request_id)["status"] == "succeeded"
    open_playground(page, web_server)
    open_from_history(page, request_id)
    expect(page.locator("#gallery .output")).to_have_count(1)
    page.locator("#gallery .use-as-input").click()
    item = page.locator("#image-list .image-input")
    expect(item).to_have_count(1)
    expect(item).to_have_attribute("data-state", "ready")
    # Our own output is same-origin: its thumbnail shows, with its size once loaded.
    expect(item.locator("img.thumb")).to_be_visible()
    expect(item).to_contain_text("512×512")
    expect(page.locator("#snippet-curl")).to_contain_text(f"/v1/files/{request_id}/")


def test_phone_width_has_one_column_without_sideways_scroll(
    page: Page, web_server: WebServer
) -> None:
    page.set_viewport_size({"width": 390, "height": 844})
    open_playground(page, web_server)
    form = page.locator("#edit-form")
    submit = page.locator("#submit")
    expect(form).to_be_visible()
    submit.scroll_into_view_if_needed()
    expect(submit).to_be_visible()
    for locator in (form, submit):
        box = locator.bounding_box()
        assert box is not None
        assert box["x"] >= 0 and box["x"] + box["width"] <= 390, box
    assert page.evaluate("document.documentElement.scrollWidth") <= 390


def test_keyboard_reaches_the_key_field_and_submit(page: Page, web_server: WebServer) -> None:
    page.goto(f"{web_server.base}/")

    def tab_to(element_id: str, presses: int) -> None:
        for _ in range(presses):
            page.keyboard.press("Tab")
            if page.evaluate("document.activeElement?.id") == element_id:
                assert page.evaluate("document.activeElement.matches(':focus-visible')")
                return
        raise AssertionError(f"#{element_id} was not reached in {presses} presses of Tab")

    tab_to("api-key", 10)
    page.keyboard.type(web_server.user_key)
    page.keyboard.press("Enter")
    expect(page.locator("#field-prompt")).to_be_visible()
    tab_to("submit", 40)
