"""The README's quick start, run as written: its commands are read from README.md itself (the
fenced blocks between the quickstart markers), so the test fails when they break.

Terminal 1 of the quick start is `make serve`; the test starts `retouch serve` in its place,
on a free port, with the quick start's default data dir (`./.retouch` of a temporary folder).
Terminal 2 runs with bash in that folder, changed in one way only: `127.0.0.1:8000` becomes
the test server's address. `.venv` is a link to this interpreter's environment.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from e2e_support import RetouchProcess, seed_data_dir, server_env

README = Path(__file__).resolve().parents[2] / "README.md"
QUICKSTART = re.compile(r"<!-- quickstart:start -->(.*?)<!-- quickstart:end -->", re.DOTALL)
FENCED_BLOCK = re.compile(r"^```(?:sh|bash)?\n(.*?)^```$", re.DOTALL | re.MULTILINE)
README_ADDRESS = "127.0.0.1:8000"
# 1K of the 4:3 ratio, the table's ratio closest to the 640×480 input's.
EXPECTED_SIZE = (1200, 896)


def quickstart_terminals() -> tuple[str, str]:
    """The quick start's two blocks: what terminal 1 runs, and what terminal 2 runs."""
    section = QUICKSTART.search(README.read_text(encoding="utf-8"))
    assert section is not None, "README.md has lost its quickstart markers"
    blocks = FENCED_BLOCK.findall(section.group(1))
    assert len(blocks) == 2, f"expected two fenced blocks in the quick start, found {blocks}"
    return blocks[0], blocks[1]


def test_the_readme_quickstart_edits_an_image(
    tmp_path: Path, models_cache: Path, backend: str
) -> None:
    if backend != "sqlite":
        pytest.skip("the quick start runs the embedded default: SQLite in ./.retouch")
    terminal_1, terminal_2 = quickstart_terminals()
    # The test stands in for terminal 1 with the command `make serve` runs.
    assert terminal_1.strip() == "make serve", terminal_1
    assert README_ADDRESS in terminal_2, "the quick start no longer talks to 127.0.0.1:8000"

    clone = tmp_path / "clone"
    clone.mkdir()
    (clone / ".venv").symlink_to(sys.prefix, target_is_directory=True)
    data_dir = clone / ".retouch"  # the default data dir, which `keys create` finds there
    seed_data_dir(data_dir, models_cache)
    server = RetouchProcess(data_dir, server_env()).serve()
    try:
        assert server.read_first_key().startswith("rtk_")  # the first start prints a key
        script = terminal_2.replace(README_ADDRESS, f"127.0.0.1:{server.port}")
        env = {name: value for name, value in os.environ.items() if not name.startswith("RETOUCH_")}
        done = subprocess.run(
            ["bash", "-e", "-o", "pipefail", "-c", script],
            cwd=clone,
            env=env,
            capture_output=True,
            text=True,
            timeout=180,
        )
    finally:
        server.stop()

    assert done.returncode == 0, f"stdout:\n{done.stdout}\nstderr:\n{done.stderr}"
    # `make serve` says where it listens and where the docs are, as the README promises.
    docs_url = f"http://127.0.0.1:{server.port}/docs"
    assert docs_url in server.log_text(), server.log_text()
    assert "completed" in done.stdout, done.stdout
    edited = clone / "edited.png"
    assert edited.is_file(), done.stdout
    with Image.open(edited) as image:
        assert image.format == "PNG"
        assert image.size == EXPECTED_SIZE
