"""`retouch serve --api-processes N` in-process, with uvicorn and the worker supervisor
replaced by recorders: the number checked, the import-string app handed to uvicorn, the flags
handed to the API processes, and the worker stopped once uvicorn's parent returns. The real
processes run in tests/e2e/test_scale_out.py. Then serve's HTTPS settings (the real server
in tests/e2e/test_tls.py), the help of every command, --version, and which commands need an
existing data dir."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest
import trustme
import typer
import uvicorn
from cryptography.hazmat.primitives import serialization
from typer.testing import CliRunner, Result

from retouch.api.asgi import FACTORY
from retouch.api.http_protocol import HardenedHttpToolsProtocol
from retouch.cli import app
from retouch.config import Settings
from retouch.worker import supervisor

FLAGS = [
    "host",
    "port",
    "data_dir",
    "database_url",
    "model",
    "device",
    "config",
    "api_processes",
    "ssl_certfile",
    "ssl_keyfile",
]


class Recorded:
    def __init__(self) -> None:
        self.events: list[str] = []
        self.uvicorn_calls: list[tuple[Any, dict[str, Any]]] = []
        self.uvicorn_error: BaseException | None = None
        self.log_formats: list[str] = []


@pytest.fixture
def recorded(monkeypatch: pytest.MonkeyPatch) -> Iterator[Recorded]:
    record = Recorded()

    class RecordingSupervisor:
        def __init__(self, settings: Settings) -> None:
            pass

        def start(self) -> None:
            record.events.append("worker started")

        def stop(self) -> None:
            record.events.append("worker stopped")

    def run(app_: Any, **options: Any) -> None:
        record.events.append("uvicorn")
        record.uvicorn_calls.append((app_, options))
        if record.uvicorn_error is not None:
            raise record.uvicorn_error

    monkeypatch.setattr(supervisor, "WorkerSupervisor", RecordingSupervisor)
    monkeypatch.setattr(uvicorn, "run", run)
    monkeypatch.setattr("retouch.cli.configure_logging", record.log_formats.append)
    # serve exports its flags into os.environ: restored at the end of the test.
    for name in FLAGS:
        monkeypatch.delenv(f"RETOUCH_{name.upper()}", raising=False)
    yield record


def serve(*arguments: str, **environment: str) -> Result:
    return CliRunner().invoke(app, ["serve", *arguments], env=environment)


@pytest.mark.parametrize(
    ("arguments", "environment", "named"),
    [
        (["--api-processes", "0"], {}, "--api-processes"),
        ([], {"RETOUCH_API_PROCESSES": "0"}, "RETOUCH_API_PROCESSES"),
        ([], {"RETOUCH_API_PROCESSES": "two"}, "RETOUCH_API_PROCESSES"),
    ],
)
def test_a_number_of_api_processes_below_one_is_refused(
    recorded: Recorded,
    tmp_path: Path,
    arguments: list[str],
    environment: dict[str, str],
    named: str,
) -> None:
    result = serve("--data-dir", str(tmp_path), *arguments, **environment)
    assert result.exit_code == 2, result.output
    assert f"configuration error: {named}:" in result.output
    assert recorded.events == []


def test_several_api_processes_run_the_factory_and_the_parent_stops_the_worker(
    recorded: Recorded, tmp_path: Path
) -> None:
    data_dir = tmp_path / "data"
    result = serve("--data-dir", str(data_dir), "--port", "8123", "--api-processes", "3")
    assert result.exit_code == 0, result.output
    assert "3 API processes" in result.output
    assert recorded.events == ["worker started", "uvicorn", "worker stopped"]
    [(served, options)] = recorded.uvicorn_calls
    assert served == FACTORY
    assert options["factory"] is True and options["workers"] == 3 and options["port"] == 8123
    # The API processes build their settings from the environment, flags included.
    assert os.environ["RETOUCH_DATA_DIR"] == str(data_dir)
    assert os.environ["RETOUCH_PORT"] == "8123"


def test_the_worker_is_stopped_when_uvicorns_parent_fails(
    recorded: Recorded, tmp_path: Path
) -> None:
    recorded.uvicorn_error = SystemExit(1)  # as uvicorn exits when the port is taken
    result = serve("--data-dir", str(tmp_path), "--api-processes", "2")
    assert result.exit_code == 1
    assert recorded.events == ["worker started", "uvicorn", "worker stopped"]


def test_one_api_process_runs_the_app_in_process_and_stops_the_worker_on_shutdown(
    recorded: Recorded, tmp_path: Path
) -> None:
    result = serve("--data-dir", str(tmp_path), "--api-processes", "1")
    assert result.exit_code == 0, result.output
    [(served, options)] = recorded.uvicorn_calls
    assert not isinstance(served, str) and "workers" not in options
    # A single server re-raises SIGTERM once it has stopped: serve takes it as a
    # KeyboardInterrupt (caught by uvicorn.run), then drains the worker after uvicorn.run.
    assert recorded.events == ["worker started", "uvicorn", "worker stopped"]


def test_no_worker_runs_the_api_processes_alone(recorded: Recorded, tmp_path: Path) -> None:
    result = serve("--data-dir", str(tmp_path), "--api-processes", "2", "--no-worker")
    assert result.exit_code == 0, result.output
    assert recorded.events == ["uvicorn"]


def test_serve_logs_in_the_configured_format_through_one_handler(
    recorded: Recorded, tmp_path: Path
) -> None:
    result = serve("--data-dir", str(tmp_path), "--api-processes", "2", RETOUCH_LOG_FORMAT="json")
    assert result.exit_code == 0, result.output
    assert recorded.log_formats == ["json"]
    [(_, options)] = recorded.uvicorn_calls
    # uvicorn configures no handlers of its own: its lines go through ours, JSON too.
    assert options["log_config"] is None and options["access_log"] is False


# --- HTTPS: --ssl-certfile and --ssl-keyfile ------------------------------------------------


@pytest.fixture(scope="module")
def issued() -> trustme.LeafCert:
    return trustme.CA().issue_cert("127.0.0.1")


@pytest.fixture
def tls_files(tmp_path: Path, issued: trustme.LeafCert) -> tuple[str, str]:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    issued.cert_chain_pems[0].write_to_path(str(cert))
    issued.private_key_pem.write_to_path(str(key))
    return str(cert), str(key)


def tls(cert: str, key: str) -> list[str]:
    return ["--ssl-certfile", cert, "--ssl-keyfile", key]


@pytest.mark.parametrize("processes", ["1", "3"])
def test_a_certificate_and_its_key_serve_https_in_every_api_process(
    recorded: Recorded, tmp_path: Path, tls_files: tuple[str, str], processes: str
) -> None:
    cert, key = tls_files
    result = serve(
        "--data-dir",
        str(tmp_path / "data"),
        "--port",
        "8443",
        "--api-processes",
        processes,
        *tls(cert, key),
    )
    assert result.exit_code == 0, result.output
    assert "Retouch API on https://127.0.0.1:8443 " in result.output
    assert "http://" not in result.output
    [(_, options)] = recorded.uvicorn_calls
    assert options["ssl_certfile"] == cert and options["ssl_keyfile"] == key
    assert options["http"].func is HardenedHttpToolsProtocol  # its limits hold over TLS too


def test_without_a_certificate_serve_is_plain_http(recorded: Recorded, tmp_path: Path) -> None:
    result = serve("--data-dir", str(tmp_path), "--port", "8123")
    assert result.exit_code == 0, result.output
    assert "Retouch API on http://127.0.0.1:8123 " in result.output
    [(_, options)] = recorded.uvicorn_calls
    assert "ssl_certfile" not in options and "ssl_keyfile" not in options


def test_the_https_settings_are_read_from_the_environment(
    recorded: Recorded, tmp_path: Path, tls_files: tuple[str, str]
) -> None:
    cert, key = tls_files
    result = serve(
        "--data-dir", str(tmp_path / "data"), RETOUCH_SSL_CERTFILE=cert, RETOUCH_SSL_KEYFILE=key
    )
    assert result.exit_code == 0, result.output
    assert "Retouch API on https://" in result.output
    [(_, options)] = recorded.uvicorn_calls
    assert options["ssl_certfile"] == cert and options["ssl_keyfile"] == key


def refusal(recorded: Recorded, tmp_path: Path, *arguments: str, **environment: str) -> str:
    """serve's one refusal line, checked to come before anything started (not even the data
    dir was made, so nothing was migrated)."""
    data_dir = tmp_path / "data"
    result = serve("--data-dir", str(data_dir), *arguments, **environment)
    assert result.exit_code == 2, result.output
    assert recorded.events == [] and not data_dir.exists()
    return " ".join(result.output.split())


@pytest.mark.parametrize(
    ("given", "missing"),
    [
        ("--ssl-certfile", "--ssl-keyfile (or RETOUCH_SSL_KEYFILE)"),
        ("--ssl-keyfile", "--ssl-certfile (or RETOUCH_SSL_CERTFILE)"),
        ("RETOUCH_SSL_CERTFILE", "--ssl-keyfile (or RETOUCH_SSL_KEYFILE)"),
        ("RETOUCH_SSL_KEYFILE", "--ssl-certfile (or RETOUCH_SSL_CERTFILE)"),
    ],
)
def test_one_of_the_two_alone_is_refused(
    recorded: Recorded, tmp_path: Path, tls_files: tuple[str, str], given: str, missing: str
) -> None:
    path = tls_files[0] if "CERT" in given.upper() else tls_files[1]
    if given.startswith("--"):
        shown = refusal(recorded, tmp_path, given, path)
    else:
        shown = refusal(recorded, tmp_path, **{given: path})
    assert f"configuration error: {given} needs {missing} too" in shown
    assert "give both, or neither" in shown


def test_a_missing_file_is_refused(
    recorded: Recorded, tmp_path: Path, tls_files: tuple[str, str]
) -> None:
    cert, key = tls_files
    absent = str(tmp_path / "absent.pem")
    shown = refusal(recorded, tmp_path, *tls(absent, key))
    assert f"configuration error: --ssl-certfile: {absent} does not exist" in shown
    shown = refusal(recorded, tmp_path, *tls(cert, absent))
    assert f"configuration error: --ssl-keyfile: {absent} does not exist" in shown


def test_a_folder_is_refused_naming_the_variable(
    recorded: Recorded, tmp_path: Path, tls_files: tuple[str, str]
) -> None:
    shown = refusal(
        recorded, tmp_path, "--ssl-certfile", tls_files[0], RETOUCH_SSL_KEYFILE=str(tmp_path)
    )
    assert f"configuration error: RETOUCH_SSL_KEYFILE: {tmp_path} is not a file" in shown


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file")
def test_an_unreadable_file_is_refused(
    recorded: Recorded, tmp_path: Path, tls_files: tuple[str, str]
) -> None:
    cert, key = tls_files
    Path(key).chmod(0)
    shown = refusal(recorded, tmp_path, *tls(cert, key))
    assert f"configuration error: --ssl-keyfile: {key} cannot be read" in shown


def test_a_file_that_is_not_a_certificate_is_refused(
    recorded: Recorded, tmp_path: Path, tls_files: tuple[str, str]
) -> None:
    _, key = tls_files
    for not_a_certificate in (key, write(tmp_path / "text.pem", b"not a certificate\n")):
        shown = refusal(recorded, tmp_path, *tls(not_a_certificate, key))
        assert f"configuration error: --ssl-certfile: {not_a_certificate} holds no PEM" in shown
        assert "NO_CERTIFICATE_OR_CRL_FOUND" in shown  # the ssl module's own words


def test_a_key_that_is_not_the_certificates_is_refused(
    recorded: Recorded, tmp_path: Path, tls_files: tuple[str, str]
) -> None:
    cert, _ = tls_files
    other_key = tmp_path / "other-key.pem"
    trustme.CA().issue_cert("127.0.0.1").private_key_pem.write_to_path(str(other_key))
    for wrong in (str(other_key), cert):
        shown = refusal(recorded, tmp_path, *tls(cert, wrong))
        assert f"configuration error: --ssl-keyfile: {wrong} does not load as the private " in shown
        assert f"key of --ssl-certfile {cert}" in shown


def test_an_encrypted_key_is_refused_without_a_prompt(
    recorded: Recorded, tmp_path: Path, tls_files: tuple[str, str], issued: trustme.LeafCert
) -> None:
    cert, _ = tls_files
    key = serialization.load_pem_private_key(issued.private_key_pem.bytes(), password=None)
    encrypted = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"secret"),
    )
    path = write(tmp_path / "encrypted-key.pem", encrypted)
    shown = refusal(recorded, tmp_path, *tls(cert, path))
    assert f"configuration error: --ssl-keyfile: {path} is encrypted" in shown


def write(path: Path, data: bytes) -> str:
    path.write_bytes(data)
    return str(path)


# --- help, --version and the data dir (in-process: no server) --------------------------------


def every_command() -> list[list[str]]:
    """The words of every command and group of `retouch`, from the top."""
    found: list[list[str]] = []

    # Duck-typed: typer's commands are of the click it ships (typer._click), not `click`'s.
    def walk(command: Any, words: list[str]) -> None:
        found.append(words)
        for name, sub in getattr(command, "commands", {}).items():
            walk(sub, [*words, name])

    walk(typer.main.get_command(app), [])
    return found


def help_of(words: list[str], columns: int = 80) -> str:
    result = CliRunner().invoke(app, [*words, "--help"], env={"COLUMNS": str(columns)})
    assert result.exit_code == 0, result.output
    return result.output


def flags_of(words: list[str]) -> list[str]:
    command: Any = typer.main.get_command(app)
    for word in words:
        command = command.commands[word]
    return [
        name
        for param in command.params
        if getattr(param, "is_flag", False)
        for name in (*param.opts, *param.secondary_opts)
    ]


@pytest.mark.parametrize("words", every_command(), ids=lambda words: " ".join(words) or "retouch")
def test_help_shows_flags_without_a_metavar_and_fits_80_columns(words: list[str]) -> None:
    shown = help_of(words)
    assert "<bool>" not in shown
    for flag in flags_of(words):
        assert re.search(rf"{re.escape(flag)}\s+[<{{]", shown) is None, (flag, shown)
    assert all(len(line) <= 80 for line in shown.splitlines()), shown


def test_help_shows_the_settings_variables_in_brackets() -> None:
    for words in (["keys", "list"], ["serve"], ["worker"], ["migrate"]):
        shown = " ".join(help_of(words, columns=200).split())
        assert "[env RETOUCH_DATA_DIR; ./.retouch]" in shown, words
        assert "[env RETOUCH_DATABASE_URL; the SQLite file in the data dir]" in shown, words
    assert "[env RETOUCH_API_PROCESSES; 1]" in help_of(["serve"], columns=200)
    assert "port [off]" in help_of(["worker"], columns=200)


def test_help_paragraphs_flow_in_the_command_list() -> None:
    # A docstring's hard line breaks used to split these summaries mid-sentence.
    listed = help_of([], columns=200)
    for start, end in [
        ("Cancel a queued request", "can no longer be cancelled."),
        ("Print a request's result", "6 not finished yet."),
        ("Create or upgrade the database schema", "before starting many processes)."),
    ]:
        [line] = [line for line in listed.splitlines() if start in line]
        assert end in line, line


def test_help_shows_examples_and_the_exit_codes() -> None:
    top = help_of([])
    assert "Examples:" in top and 'retouch edit "make it snow" photo.jpg -o out/' in top
    for shown in (top, help_of(["edit"]), help_of(["result"])):
        assert "Exit codes of the client commands:" in shown
        # The table keeps its layout: a code, then its meaning, continued under it.
        assert re.search(r"^ +6 +timed out waiting", shown, re.M), shown
        assert re.search(r"^ +130 +interrupted \(Ctrl-C\)", shown, re.M), shown
        assert re.search(r"^ {5,}`retouch wait ID`", shown, re.M), shown


def test_version() -> None:
    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.output == f"retouch {metadata.version('retouch')}\n"


@pytest.fixture
def no_settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No RETOUCH_* variable of the caller's, and the current folder an empty one (the
    default data dir, ./.retouch, is relative to it)."""
    for name in list(os.environ):
        if name.upper().startswith("RETOUCH_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.mark.parametrize(
    "command", [["keys", "list"], ["keys", "revoke", "someone"], ["keys", "edit", "someone"]]
)
def test_commands_that_read_a_data_dir_refuse_a_missing_one(
    no_settings: Path, command: list[str]
) -> None:
    missing = no_settings / "typo"
    result = CliRunner().invoke(app, [*command, "--data-dir", str(missing)])
    assert result.exit_code == 2, result.output
    assert f"--data-dir {missing} does not exist" in result.output
    assert "`retouch serve`" in result.output and "RETOUCH_DATA_DIR" in result.output
    assert list(no_settings.iterdir()) == []  # nothing made

    from_env = CliRunner().invoke(app, command, env={"RETOUCH_DATA_DIR": str(missing)})
    assert from_env.exit_code == 2, from_env.output
    assert f"RETOUCH_DATA_DIR={missing} does not exist" in from_env.output

    default = CliRunner().invoke(app, command)
    assert default.exit_code == 2, default.output
    assert "the default data dir .retouch" in default.output
    assert list(no_settings.iterdir()) == []


def test_commands_that_make_a_data_dir_still_do(no_settings: Path) -> None:
    fresh = no_settings / "fresh"
    created = CliRunner().invoke(app, ["keys", "create", "--name", "a", "--data-dir", str(fresh)])
    assert created.exit_code == 0, created.output
    assert created.output.strip().splitlines()[-1].startswith("rtk_")
    listed = CliRunner().invoke(app, ["keys", "list", "--data-dir", str(fresh)])
    assert listed.exit_code == 0 and " a " in listed.output, listed.output
    other = no_settings / "other"
    migrated = CliRunner().invoke(app, ["migrate", "--data-dir", str(other)])
    assert migrated.exit_code == 0 and (other / "retouch.db").is_file(), migrated.output


def test_a_worker_needs_the_data_dir_only_where_it_reads_it(
    no_settings: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    missing = str(no_settings / "typo")
    # Not pointed at CliRunner's standard error, which is closed once invoke() returns: a
    # later test's log line would then print a logging error.
    monkeypatch.setattr("retouch.cli.configure_logging", lambda log_format: None)
    # The jobs (the SQLite file) are in the data dir.
    refused = CliRunner().invoke(app, ["worker", "--data-dir", missing])
    assert refused.exit_code == 2 and "does not exist" in refused.output, refused.output
    # The jobs elsewhere, the outputs still in the data dir's folder.
    postgres = {"RETOUCH_DATABASE_URL": "postgresql+psycopg://u:p@127.0.0.1:9/db"}
    outputs_here = CliRunner().invoke(app, ["worker", "--data-dir", missing], env=postgres)
    assert outputs_here.exit_code == 2 and "does not exist" in outputs_here.output

    # Both elsewhere: the worker goes on (stopped here, past the check).
    def stop(settings: Settings) -> None:
        raise typer.Exit(42)

    monkeypatch.setattr("retouch.cli.services_or_exit", stop)
    elsewhere = {**postgres, "RETOUCH_STORAGE_URL": "s3://bucket/prefix"}
    started = CliRunner().invoke(app, ["worker", "--data-dir", missing], env=elsewhere)
    assert started.exit_code == 42, started.output
