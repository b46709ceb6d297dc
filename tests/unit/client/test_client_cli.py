"""The client commands' checks that need no server, in-process (CliRunner): what `retouch run`
refuses before anything is sent (e2e/test_client_cli.py runs the commands against a server)."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from retouch.cli import app

ENDPOINT = "google/nano-banana-2/edit"
# Nothing listens there: a case that got as far as sending would fail differently (exit 7).
NOWHERE = ("--url", "http://127.0.0.1:9", "--api-key", "rtk_x")


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ((ENDPOINT, "--input", "{not json"), "--input is not valid JSON"),
        ((ENDPOINT, "--input", "[1, 2]"), "must be a JSON object"),
        ((ENDPOINT,), "give the input once"),
        ((ENDPOINT, "--input", "{}", "--input-file", "x.json"), "give the input once"),
        ((ENDPOINT, "--input-file", "missing.json"), "cannot read missing.json"),
        ((ENDPOINT, "-f", "-"), "standard input is not valid JSON"),
        (
            (ENDPOINT, "--input", '{"prompt": "x", "image_urls": ["nope.png"]}'),
            "no such file: nope.png",
        ),
        (("bad id", "--input", "{}"), "retouch edit PROMPT"),
        (("../webhooks/secret", "--input", "{}"), "is not an endpoint id"),
        (("a//b", "--input", "{}"), "is not an endpoint id"),
    ],
)
def test_run_refuses_bad_input_before_sending(
    arguments: tuple[str, ...], message: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    done = CliRunner().invoke(app, ["run", *arguments, *NOWHERE], input="")
    assert done.exit_code == 2, done.output
    assert done.output.startswith("error ") and message in done.output, done.output
