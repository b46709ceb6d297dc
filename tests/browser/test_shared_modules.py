"""The pages' shared modules (dom.js, api.js) run in Chromium, on the served page itself,
so the policy they live under applies."""

from __future__ import annotations

from playwright.sync_api import Page

from browser.conftest import WebServer


def _on_page(page: Page, server: WebServer) -> None:
    page.goto(f"{server.base}/")


def test_h_refuses_script_urls_and_inline_styles(page: Page, web_server: WebServer) -> None:
    _on_page(page, web_server)
    found = page.evaluate(
        """async () => {
            const { h } = await import("./ui/dom.js");
            const hrefs = ["javascript:alert(1)", " JavaScript:alert(1)", "vbscript:x",
                           "data:text/html,<script>", "https://example.com/a.png",
                           "data:image/png;base64,AA", "v1/files/x",
                           "blob:" + location.origin + "/x"]
                .map((href) => h("a", { href }, "x").getAttribute("href"));
            let styleRefused = false;
            try { h("div", { style: "color: red" }); } catch { styleRefused = true; }
            const text = h("p", {}, "<img src=x onerror=alert(1)>");
            return { hrefs, styleRefused, children: text.children.length, text: text.textContent };
        }"""
    )
    assert found["hrefs"][:4] == [None, None, None, None]
    assert found["hrefs"][4:] == [
        "https://example.com/a.png",
        "data:image/png;base64,AA",
        "v1/files/x",
        f"blob:{web_server.base}/x",
    ]
    assert found["styleRefused"] is True
    assert found["children"] == 0 and found["text"] == "<img src=x onerror=alert(1)>"


def test_integers_beyond_2_53_keep_their_digits(page: Page, web_server: WebServer) -> None:
    _on_page(page, web_server)
    seeds = page.evaluate(
        """async () => {
            const { parseJson } = await import("./ui/api.js");
            const parsed = parseJson('{"seeds": [9007199254740993, 7, -9223372036854775808]}');
            return parsed.seeds.map((seed) => `${typeof seed}:${seed}`);
        }"""
    )
    assert seeds == ["bigint:9007199254740993", "number:7", "bigint:-9223372036854775808"]


def test_the_event_parser_joins_messages_split_anywhere(page: Page, web_server: WebServer) -> None:
    _on_page(page, web_server)
    messages = page.evaluate(
        """async () => {
            const { serverSentEvents } = await import("./ui/api.js");
            const text = ": keep-alive\\r\\nevent: status\\r\\ndata: {\\"a\\": 1}\\r\\n\\r\\n"
                + "event: result\\ndata: line one\\ndata: line two\\n\\n";
            const bytes = new TextEncoder().encode(text);
            const stream = new ReadableStream({
                start(controller) {  // one byte at a time: every split a network can make
                    for (const byte of bytes) controller.enqueue(new Uint8Array([byte]));
                    controller.close();
                },
            });
            const seen = [];
            for await (const message of serverSentEvents(stream)) seen.push(message);
            return seen;
        }"""
    )
    assert messages == [
        {"event": "status", "data": '{"a": 1}'},
        {"event": "result", "data": "line one\nline two"},
    ]
