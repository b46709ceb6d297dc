"""Opening a data dir's services when the job database does not answer yet: a starting
process waits for it (as running ones wait out an outage), up to its configured limit, then
says so in one line and exits 3."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from typer.testing import CliRunner

from retouch import services as services_module
from retouch.cli import EXIT_DATABASE_UNAVAILABLE, app
from retouch.config import Settings
from retouch.services import open_services

from .databases import PostgresDatabases
from .tcp_proxy import proxy_to


def test_a_starting_process_waits_for_the_database(
    postgres: PostgresDatabases, tmp_path: Path
) -> None:
    with proxy_to(postgres.create()) as proxy:
        url = proxy.url_through(postgres.create())
        proxy.cut()
        tried = threading.Event()

        # Restored once the first try was refused: the open must then wait, not fail.
        def restore_after_a_try() -> None:
            tried.wait(30)
            proxy.restore()

        options: dict[str, object] = {"data_dir": tmp_path, "database_url": url}
        settings = Settings(**options)  # type: ignore[arg-type]
        threading.Thread(target=restore_after_a_try, daemon=True).start()
        real_open = services_module._open_services

        def counting_open(given: Settings) -> object:
            try:
                return real_open(given)
            finally:
                tried.set()

        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(services_module, "_open_services", counting_open)
            services = open_services(settings)
        try:
            assert services.keys.count() == 0
        finally:
            services.close()


def test_past_its_wait_a_command_says_the_database_does_not_answer(
    postgres: PostgresDatabases, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with proxy_to(postgres.create()) as proxy:
        url = proxy.url_through(postgres.create())
        proxy.cut()
        monkeypatch.setenv("RETOUCH_DATABASE_START_WAIT_SECONDS", "0.5")
        outcome = CliRunner().invoke(
            app, ["keys", "list", "--database-url", url, "--data-dir", str(tmp_path)]
        )
    assert outcome.exit_code == EXIT_DATABASE_UNAVAILABLE, outcome.output
    assert "the job database does not answer (OperationalError: " in outcome.output
    assert "Traceback" not in outcome.output
