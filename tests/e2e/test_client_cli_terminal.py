"""`retouch edit` under a pseudo terminal, as a user sees it: one progress line per phase
(uploading, in queue, editing, downloading), a finished phase ticked with its clock stopped,
and the clock of the queue phase running while the job waits behind another."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pexpect  # type: ignore[import-untyped]  # no stubs (types-pexpect is not a dev dependency)
import pytest

from client_support import client_env, occupy_worker
from e2e_support import Api, ImageServer, RetouchProcess, make_image

# On SQLite only: the terminal output is the client's.
pytestmark = pytest.mark.sqlite_only

# Escape sequences of the redrawn display: colours, then the rest (cursor moves, erasing a
# line, showing or hiding the cursor), which end a drawn line.
COLOUR = re.compile(r"\x1b\[[0-9;]*m")
ANSI = re.compile(r"\x1b(\[[0-?]*[ -/]*[@-~]|[@-Z\\-_])")


def screen_lines(raw: str) -> list[str]:
    """Every line drawn, in order (a redraw draws each again)."""
    text = ANSI.sub("\n", COLOUR.sub("", raw))
    return [line.strip() for line in re.split(r"[\r\n]+", text) if line.strip()]


def test_edit_shows_a_task_per_phase_and_a_running_clock_in_the_queue(
    server: RetouchProcess, api: Api, image_server: ImageServer, tmp_path: Path
) -> None:
    photo = tmp_path / "photo.png"
    photo.write_bytes(make_image(64, 64))
    env = client_env(tmp_path, RETOUCH_URL=server.base, RETOUCH_API_KEY=api.key, COLUMNS="100")
    env["TERM"] = "xterm-256color"
    # The shared worker busy for 4 s: the new job waits in the queue behind it.
    occupy_worker(api, image_server, seconds=4)
    child = pexpect.spawn(
        sys.executable,
        [
            "-m",
            "retouch",
            "edit",
            "x",
            str(photo),
            "--resolution",
            "0.5K",
            "--aspect-ratio",
            "1:1",
            "-o",
            str(tmp_path / "out"),
        ],
        env=env,
        encoding="utf-8",
        dimensions=(40, 100),
        timeout=90,
    )
    child.expect(pexpect.EOF)
    child.close()
    raw = child.before or ""
    (tmp_path / "terminal.txt").write_text(raw)  # for a look after a failure
    lines = screen_lines(raw)
    assert child.exitstatus == 0, "\n".join(lines)

    queued = [line for line in lines if "in queue" in line]
    clocks = {match.group(1) for line in queued if (match := re.search(r"(\d+:\d\d:\d\d)$", line))}
    assert len(clocks) >= 2, queued  # it moves while the job waits: 0:00:00, 0:00:01, …
    # Uploading came first, its task then completed (ticked, the file counted, its clock
    # stopped) while the queue's went on.
    uploaded = [line for line in lines if "uploaded" in line]
    assert uploaded and all(re.match(r"✓ uploaded .* 1/1 0:00:0\d$", line) for line in uploaded)
    first_queued = lines.index(queued[0])
    assert any("uploading" in line for line in lines[:first_queued])
    assert any(line.startswith("✓ queued") for line in lines), lines
    assert re.search(r"request (\S+) submitted \(resume with: retouch wait \1\)", raw)
    assert [line for line in lines if line.endswith(".png")], lines  # the saved output
