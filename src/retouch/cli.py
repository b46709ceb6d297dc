"""The `retouch` command: serve, worker, keys and migrate."""

from __future__ import annotations

import functools
import inspect
import logging
import os
import signal
import ssl
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.table import Table
from sqlalchemy.exc import SQLAlchemyError

from retouch.auth.keys import ROLES, KeyLimits, KeyRecord, Role
from retouch.client.cli import EXAMPLES_HELP, EXIT_CODES_HELP, epilog, help_text, verbatim
from retouch.client.cli import register as register_client_commands
from retouch.config import Settings, format_duration, parse_duration
from retouch.jobs.database import DATABASE_URL_VARIABLE, DatabaseUrlError
from retouch.jobs.open_store import open_store
from retouch.jobs.outage import describe, is_unavailable
from retouch.jobs.rate_limits import check_rate
from retouch.log_context import configure_logging
from retouch.served_endpoints import ConfigError, Endpoint, load_endpoints
from retouch.services import Services, open_services
from retouch.storage.signing_secret import SigningSecretError

if TYPE_CHECKING:
    from retouch.worker.supervisor import WorkerSupervisor

app = typer.Typer(
    help="Retouch: self-hosted image editing from a text prompt.",
    epilog=epilog(f"{EXAMPLES_HELP}\n\n{EXIT_CODES_HELP}"),
    no_args_is_help=True,
)
keys_app = typer.Typer(help="Create, list and revoke API keys.", no_args_is_help=True)
app.add_typer(keys_app, name="keys")
register_client_commands(app)  # edit, wait, status, result, cancel, upload, requests…


def _print_version(wanted: bool) -> None:
    if not wanted:
        return
    try:
        version = metadata.version("retouch")
    except metadata.PackageNotFoundError:  # run from a source tree that is not installed
        version = "(unknown: not installed)"
    print(f"retouch {version}")
    raise typer.Exit()


@app.callback()
def _options(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_print_version, is_eager=True, help="Print the version and exit"
        ),
    ] = False,
) -> None:
    pass


console = Console(stderr=True, soft_wrap=True)

# serve, worker, keys and migrate exit with this when the job database did not answer within
# RETOUCH_DATABASE_START_WAIT_SECONDS (2 is a configuration error).
EXIT_DATABASE_UNAVAILABLE = 3

# verbatim(): typer reads option help as rich markup, where "[env …]" is a tag (it vanished).
DataDir = Annotated[
    Path | None,
    typer.Option(
        help=verbatim(
            "Where the database, keys and outputs live [env RETOUCH_DATA_DIR; ./.retouch]"
        )
    ),
]
DatabaseUrl = Annotated[
    str | None,
    typer.Option(
        help=verbatim(
            "sqlite:///PATH or postgresql+psycopg://USER:PASS@HOST:PORT/DB "
            "[env RETOUCH_DATABASE_URL; the SQLite file in the data dir]"
        )
    ),
]
Model = Annotated[
    str | None,
    typer.Option(help="Weights: a local directory or a Hugging Face id; unset = preview model"),
]
Device = Annotated[str | None, typer.Option(help="Torch device, e.g. cuda:0 (default: auto)")]
ConfigFile = Annotated[
    Path | None,
    typer.Option("--config", help=verbatim("TOML file of served endpoints [env RETOUCH_CONFIG]")),
]


def setting_source(name: str, overrides: dict[str, Any]) -> str:
    """What set a setting, for a refusal: its flag when one was given, else its variable."""
    if overrides.get(name) is not None:
        return f"--{name.replace('_', '-')}"
    return f"RETOUCH_{name.upper()}"


def load_settings(**overrides: Any) -> Settings:
    """The settings, or exit 2 naming the flag or variable whose value is refused."""
    given = {name: value for name, value in overrides.items() if value is not None}
    try:
        return Settings(**given)
    except ValidationError as error:
        for problem in error.errors():
            name = str(problem["loc"][0]) if problem["loc"] else ""
            source = setting_source(name, given)
            console.print(
                f"configuration error: {source}: {problem['msg']}", style="bold red", markup=False
            )
        raise typer.Exit(2) from None


class _KeyIsEncrypted(Exception):
    pass


def _no_key_password() -> str:
    # Without a password callback OpenSSL would prompt for one on the terminal.
    raise _KeyIsEncrypted


def require_tls_files(settings: Settings, flags: dict[str, Any]) -> None:
    """Exit 2 unless the HTTPS settings are both unset, or both set to a certificate and its
    private key that load: uvicorn would otherwise fail on them only once serve had migrated,
    started its worker and printed its URL (or serve plain HTTP, given a key alone)."""
    if not settings.tls:
        return
    cert, key = settings.ssl_certfile, settings.ssl_keyfile
    cert_source = setting_source("ssl_certfile", flags)
    key_source = setting_source("ssl_keyfile", flags)
    if cert is None or key is None:
        given, missing = (
            (key_source, "ssl_certfile") if cert is None else (cert_source, "ssl_keyfile")
        )
        _refuse(
            f"{given} needs --{missing.replace('_', '-')} (or RETOUCH_{missing.upper()}) too: "
            "HTTPS takes a certificate and its private key; give both, or neither for plain HTTP"
        )
    for source, path in ((cert_source, cert), (key_source, key)):
        if not path.exists():
            _refuse(f"{source}: {path} does not exist: pass the path of a PEM file")
        if not path.is_file():
            _refuse(f"{source}: {path} is not a file: pass the path of a PEM file")
        try:
            path.open("rb").close()
        except OSError as error:
            _refuse(
                f"{source}: {path} cannot be read ({error.strerror}): pass a file that the "
                "user serve runs as can read"
            )
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        # First the certificates alone, so a refusal names the file at fault.
        context.load_verify_locations(cafile=cert)
    except ssl.SSLError as error:
        _refuse(
            f"{cert_source}: {cert} holds no PEM certificate ({error}): pass the server's "
            "certificate (or its chain, server certificate first) in PEM"
        )
    try:
        context.load_cert_chain(cert, key, password=_no_key_password)
    except _KeyIsEncrypted:
        _refuse(
            f"{key_source}: {key} is encrypted, and serve takes no key password: pass it "
            "decrypted (`openssl pkey -in KEY -out PLAIN_KEY`)"
        )
    except ssl.SSLError as error:
        _refuse(
            f"{key_source}: {key} does not load as the private key of {cert_source} {cert} "
            f"({error}): pass the PEM private key that matches the certificate"
        )


def _refuse(message: str) -> NoReturn:
    console.print(f"configuration error: {message}", style="bold red", markup=False)
    raise typer.Exit(2)


def require_data_dir(settings: Settings, given: Path | None, *, outputs: bool = False) -> None:
    """Exit 2 when the data dir (from --data-dir, RETOUCH_DATA_DIR or the default) is not an
    existing folder but the command reads from it: the job database, when it is the SQLite
    file there (no database URL); with `outputs`, also the output files, when they are
    stored there (no RETOUCH_STORAGE_URL). Opening it would otherwise make a new, empty data
    dir, and the command would work on nothing (no keys, no jobs) without a word."""
    folder = settings.data_dir
    if folder.is_dir():
        return
    reads = settings.database_url is None or (outputs and settings.storage_url is None)
    if not reads:
        return
    if given is not None:
        source = f"--data-dir {folder}"
    elif any(name.upper() == "RETOUCH_DATA_DIR" for name in os.environ):
        source = f"RETOUCH_DATA_DIR={folder}"
    else:
        source = f"the default data dir {folder} (no --data-dir or RETOUCH_DATA_DIR)"
    problem = "is not a folder" if folder.exists() else "does not exist"
    console.print(
        f"configuration error: {source} {problem}: pass the data dir that `retouch serve` "
        "uses (--data-dir, or RETOUCH_DATA_DIR)",
        style="bold red",
        markup=False,
    )
    raise typer.Exit(2)


def export_flags(overrides: dict[str, Any]) -> None:
    """Put the flags given into this process's environment as the RETOUCH_* variables they
    override, for the children that read their settings from it (serve's worker and API
    processes); a database password stays out of their command lines, and so out of `ps`."""
    for name, value in overrides.items():
        if value is not None:
            os.environ[f"RETOUCH_{name.upper()}"] = str(value)


def preview_warning(endpoint: Endpoint) -> str:
    return (
        f"PREVIEW MODEL on {endpoint.id}: no model is configured for it, so Retouch runs "
        f"{endpoint.engine} with tiny random weights. Its outputs are noise, not real edits. "
        "Configure real weights (--model, or `model` in the config file) on a GPU machine."
    )


def services_or_exit(settings: Settings) -> Services:
    with configuration_checked():
        return open_services(settings)


@contextmanager
def configuration_checked() -> Iterator[None]:
    try:
        yield
    except (DatabaseUrlError, SigningSecretError) as error:
        console.print(f"configuration error: {error}", style="bold red", markup=False)
        raise typer.Exit(2) from None
    except SQLAlchemyError as error:
        if not is_unavailable(error):
            raise
        console.print(
            f"the job database does not answer ({describe(error)}); start it, or check "
            f"{DATABASE_URL_VARIABLE}, then try again",
            style="bold red",
            markup=False,
        )
        raise typer.Exit(EXIT_DATABASE_UNAVAILABLE) from None


def endpoints_or_exit(settings: Settings) -> list[Endpoint]:
    try:
        return load_endpoints(settings)
    except ConfigError as error:
        console.print(f"configuration error: {error}", style="bold red", markup=False)
        raise typer.Exit(2) from None


@app.command()
def serve(
    host: Annotated[
        str | None, typer.Option(help=verbatim("Address to listen on [127.0.0.1]"))
    ] = None,
    port: Annotated[int | None, typer.Option(help=verbatim("Port to listen on [8000]"))] = None,
    data_dir: DataDir = None,
    database_url: DatabaseUrl = None,
    model: Model = None,
    device: Device = None,
    config: ConfigFile = None,
    worker: Annotated[bool, typer.Option(help="Run a worker process beside the API")] = True,
    api_processes: Annotated[
        int | None,
        typer.Option(
            help=verbatim("API processes sharing the port [env RETOUCH_API_PROCESSES; 1]")
        ),
    ] = None,
    ssl_certfile: Annotated[
        Path | None,
        typer.Option(
            help=verbatim(
                "PEM certificate (or chain) to serve HTTPS with, with --ssl-keyfile "
                "[env RETOUCH_SSL_CERTFILE; plain HTTP]"
            )
        ),
    ] = None,
    ssl_keyfile: Annotated[
        Path | None,
        typer.Option(
            help=verbatim("Its PEM private key, unencrypted [env RETOUCH_SSL_KEYFILE; plain HTTP]")
        ),
    ] = None,
) -> None:
    """Run the API, with one worker process beside it."""
    import uvicorn

    from retouch.api.app import create_app
    from retouch.api.asgi import FACTORY
    from retouch.api.http_protocol import HardenedHttpToolsProtocol
    from retouch.metrics.multiprocess import enable as enable_multiprocess_metrics
    from retouch.worker.supervisor import WorkerSupervisor

    flags = {
        "host": host,
        "port": port,
        "data_dir": data_dir,
        "database_url": database_url,
        "model": model,
        "device": device,
        "config": config,
        "api_processes": api_processes,
        "ssl_certfile": ssl_certfile,
        "ssl_keyfile": ssl_keyfile,
    }
    settings = load_settings(**flags)
    require_tls_files(settings, flags)
    configure_logging(settings.log_format)
    if settings.metrics:  # before any child starts: they all count into <data dir>/metrics
        enable_multiprocess_metrics(settings.data_dir.resolve())
    endpoints = endpoints_or_exit(settings)
    # Migrates, and makes the signing secret, before any child starts: API processes started
    # together then find both done (they would also be safe racing: see jobs/database.py).
    services = services_or_exit(settings)
    export_flags(flags)
    if services.keys.count() == 0:
        _, key = services.keys.create("default")
        console.print(
            "[bold green]First start: created API key 'default'. It is shown only this once:"
        )
        print(key, flush=True)
    for endpoint in endpoints:
        if endpoint.preview:
            console.print(preview_warning(endpoint), style="bold red", markup=False)
    supervisor = WorkerSupervisor(settings) if worker else None
    if supervisor:
        supervisor.start()
    # On stderr: stdout carries only the first start's key line, which scripts read.
    url = settings.listen_url
    processes = settings.api_processes
    console.print(
        f"Retouch API on {url} (playground: {url}/, console: {url}/console, "
        f"interactive docs: {url}/docs)"
        + (f", {processes} API processes" if processes > 1 else ""),
        markup=False,
    )
    server_options: dict[str, Any] = {
        # httptools with a cap on request heads and a deadline for reading them (431, 408).
        "http": functools.partial(
            HardenedHttpToolsProtocol, head_timeout_seconds=settings.header_timeout_seconds
        ),
        "host": settings.host,
        "port": settings.port,
        "log_level": "warning",
        # uvicorn's own warnings go through our handler (so they are JSON too, with
        # RETOUCH_LOG_FORMAT=json); requests are logged by our access log, not uvicorn's.
        "log_config": None,
        "access_log": False,
        # Bounded, so a client holding a connection open cannot keep the server from stopping.
        "timeout_graceful_shutdown": 5,
    }
    if settings.ssl_certfile is not None and settings.ssl_keyfile is not None:
        # Each API process of --api-processes N builds its SSL context from these paths.
        server_options["ssl_certfile"] = str(settings.ssl_certfile)
        server_options["ssl_keyfile"] = str(settings.ssl_keyfile)
    # uvicorn re-raises the SIGTERM it stopped on once it has shut down: as a KeyboardInterrupt
    # (which uvicorn.run catches, like a Ctrl-C's) serve goes on, drains its worker and exits
    # 0, instead of dying of the signal.
    handlers = {signum: signal.getsignal(signum) for signum in (signal.SIGTERM, signal.SIGINT)}
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        if processes == 1:
            uvicorn.run(create_app(settings, services, endpoints), **server_options)
        else:
            services.close()  # each API process opens its own
            # uvicorn's parent restarts an API process that dies, and on SIGTERM or SIGINT
            # stops them all and returns.
            uvicorn.run(FACTORY, factory=True, workers=processes, **server_options)
    finally:
        # Once no API process is left: the worker drains (RETOUCH_DRAIN_SECONDS), and is not
        # restarted.
        try:
            if supervisor:
                _drain_worker(supervisor)
        finally:
            for signum, handler in handlers.items():
                signal.signal(signum, handler)


def _drain_worker(supervisor: WorkerSupervisor) -> None:
    """Stops serve's worker; a second SIGTERM or Ctrl-C meanwhile is passed on to it (it puts
    its running job back in the queue at once) rather than interrupting serve."""
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: supervisor.hurry())
    supervisor.stop()


@app.command("worker")
def worker_command(
    data_dir: DataDir = None,
    database_url: DatabaseUrl = None,
    model: Model = None,
    device: Device = None,
    config: ConfigFile = None,
    endpoint: Annotated[
        list[str] | None,
        typer.Option(help="Serve only this endpoint id (repeatable); default: all configured"),
    ] = None,
    metrics_port: Annotated[
        int | None,
        typer.Option(help=verbatim("Serve this worker's /metrics on this port [off]")),
    ] = None,
    metrics_host: Annotated[str, typer.Option(help="Address of --metrics-port")] = "127.0.0.1",
) -> None:
    """Run one worker process against a data dir (one per GPU)."""
    settings = load_settings(
        data_dir=data_dir, database_url=database_url, model=model, device=device, config=config
    )
    # Its jobs (the SQLite file) and its outputs (the local folder) are the API's: in the
    # data dir `retouch serve` made, unless both live elsewhere (PostgreSQL, S3).
    require_data_dir(settings, data_dir, outputs=True)
    from retouch.worker.runner import build_worker, loaded_engines

    configure_logging(settings.log_format)
    log = logging.getLogger(__name__)
    endpoints = endpoints_or_exit(settings)
    if endpoint:
        unknown = sorted(set(endpoint) - {e.id for e in endpoints})
        if unknown:
            console.print(f"not configured: {', '.join(unknown)}", style="bold red", markup=False)
            raise typer.Exit(2)
        endpoints = [e for e in endpoints if e.id in endpoint]
    for served in endpoints:
        if served.preview:
            log.warning(preview_warning(served))
    services = services_or_exit(settings)
    if metrics_port is not None:
        from retouch.metrics.multiprocess import serve_worker_metrics

        serve_worker_metrics(metrics_port, metrics_host)

    runner = build_worker(settings, services, endpoints, loaded_engines(settings, endpoints))
    # Drains: no more claims, the running job finishes within RETOUCH_DRAIN_SECONDS or goes
    # back to the queue (at once on a second signal), then exit 0.
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: runner.signalled())
    try:
        runner.run_forever()
    finally:
        services.close()


def _when(timestamp: float | None) -> str:
    if timestamp is None:
        return "-"
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def _rate(value: str | None) -> str | None:
    if value is None:
        return None
    try:
        return check_rate(value)
    except ValueError as error:
        raise typer.BadParameter(str(error)) from None


MaxQueued = Annotated[
    int | None,
    typer.Option(
        "--max-queued",
        min=1,
        help="Jobs the key may have queued at once (past it: 429001) "
        "(default: RETOUCH_KEY_MAX_QUEUED)",
    ),
]
Rate = Annotated[
    str | None,
    typer.Option(
        "--rate",
        help="Submits per window, e.g. 60/minute, 10/second (past it: 429001) "
        "(default: RETOUCH_KEY_SUBMIT_RATE)",
    ),
]
MaxRunning = Annotated[
    int | None,
    typer.Option(
        "--max-running",
        min=1,
        help="Jobs of the key running at once; more wait in the queue "
        "(default: RETOUCH_KEY_MAX_RUNNING)",
    ),
]


RetainResults = Annotated[
    str | None,
    typer.Option(
        "--retain-results",
        help="How long the key's results and outputs are kept after a job ends, e.g. 30d, "
        "12h (default: RETOUCH_RETAIN_RESULTS)",
    ),
]
RetainUploads = Annotated[
    str | None,
    typer.Option(
        "--retain-uploads",
        help="How long the key's uploads are kept, e.g. 2h (default: RETOUCH_RETAIN_UPLOADS)",
    ),
]


def _duration(value: str | None, option: str) -> float | None:
    if value is None:
        return None
    try:
        return parse_duration(value, setting=option)
    except ValueError as error:
        raise typer.BadParameter(str(error), param_hint=option) from None


def _limits(
    max_queued: int | None,
    rate: str | None,
    max_running: int | None,
    retain_results: str | None,
    retain_uploads: str | None,
) -> dict[str, Any]:
    """The limits given on the command line, by KeyLimits field."""
    given = {
        "max_queued": max_queued,
        "submit_rate": _rate(rate),
        "max_running": max_running,
        "retain_results_seconds": _duration(retain_results, "--retain-results"),
        "retain_uploads_seconds": _duration(retain_uploads, "--retain-uploads"),
    }
    return {name: value for name, value in given.items() if value is not None}


# --default NAME: the KeyLimits field it gives back to the server's default.
_DEFAULTABLE = {
    "max-queued": "max_queued",
    "rate": "submit_rate",
    "max-running": "max_running",
    "retain-results": "retain_results_seconds",
    "retain-uploads": "retain_uploads_seconds",
}


def _describe_limits(record: KeyRecord) -> str:
    limits = record.limits
    kept = (limits.retain_results_seconds, limits.retain_uploads_seconds)
    parts = [
        f"max queued {limits.max_queued}" if limits.max_queued is not None else "",
        f"rate {limits.submit_rate}" if limits.submit_rate else "",
        f"max running {limits.max_running}" if limits.max_running is not None else "",
        f"results kept {format_duration(kept[0])}" if kept[0] is not None else "",
        f"uploads kept {format_duration(kept[1])}" if kept[1] is not None else "",
    ]
    return ", ".join(part for part in parts if part) or "server defaults"


@keys_app.command("create")
def keys_create(
    name: Annotated[str, typer.Option(help="A label for the key, e.g. who uses it")],
    admin: Annotated[
        bool,
        typer.Option(
            "--admin",
            help="An admin key: sees every key's jobs (GET /v1/admin/requests) and the "
            "workers, and cancels any job",
        ),
    ] = False,
    max_queued: MaxQueued = None,
    rate: Rate = None,
    max_running: MaxRunning = None,
    retain_results: RetainResults = None,
    retain_uploads: RetainUploads = None,
    data_dir: DataDir = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Create a key. The key is printed once, as the last line; only its hash is kept."""
    limits = KeyLimits(**_limits(max_queued, rate, max_running, retain_results, retain_uploads))
    services = services_or_exit(load_settings(data_dir=data_dir, database_url=database_url))
    record, key = services.keys.create(name, role="admin" if admin else "user", limits=limits)
    console.print(
        f"Created {record.role} key {record.id} ({record.name}; {_describe_limits(record)}). "
        "Store it now; it cannot be shown again:"
    )
    print(key)


@keys_app.command("edit")
def keys_edit(
    key: Annotated[str, typer.Argument(help="The key's id, or a name (edits all with it)")],
    role: Annotated[
        str | None, typer.Option("--role", help="user or admin", show_default=False)
    ] = None,
    max_queued: MaxQueued = None,
    rate: Rate = None,
    max_running: MaxRunning = None,
    retain_results: RetainResults = None,
    retain_uploads: RetainUploads = None,
    default: Annotated[
        list[str] | None,
        typer.Option(
            "--default",
            help="Give this limit back to the server default: "
            f"{', '.join(_DEFAULTABLE)} (repeatable)",
        ),
    ] = None,
    data_dir: DataDir = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Change a key's role or limits; every API process applies it within a second."""
    if role is not None and role not in ROLES:
        raise typer.BadParameter(f"{role!r}: use user or admin", param_hint="--role")
    changes = _limits(max_queued, rate, max_running, retain_results, retain_uploads)
    for name in default or []:
        if name not in _DEFAULTABLE:
            raise typer.BadParameter(
                f"{name!r}: use one of {', '.join(_DEFAULTABLE)}", param_hint="--default"
            )
        changes[_DEFAULTABLE[name]] = None
    settings = load_settings(data_dir=data_dir, database_url=database_url)
    require_data_dir(settings, data_dir)
    services = services_or_exit(settings)
    new_role: Role | None = None if role is None else ("admin" if role == "admin" else "user")
    edited = services.keys.edit(key, role=new_role, **changes)
    if not edited:
        console.print(f"[red]no active key with id or name {key!r}")
        raise typer.Exit(1)
    for record in edited:
        console.print(f"{record.id} ({record.name}): {record.role}, {_describe_limits(record)}")


@keys_app.command("list")
def keys_list(data_dir: DataDir = None, database_url: DatabaseUrl = None) -> None:
    """List keys (ids, names, roles and limits; the keys themselves are not stored)."""
    settings = load_settings(data_dir=data_dir, database_url=database_url)
    require_data_dir(settings, data_dir)
    services = services_or_exit(settings)
    table = Table("id", "name", "role", "limits", "created", "revoked")
    for record in services.keys.list_keys():
        table.add_row(
            record.id,
            record.name,
            record.role,
            _describe_limits(record),
            _when(record.created_at),
            _when(record.revoked_at),
        )
    Console().print(table)


@keys_app.command("revoke")
def keys_revoke(
    key: Annotated[str, typer.Argument(help="The key's id, or a name (revokes all with it)")],
    data_dir: DataDir = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Revoke a key: its requests answer 401, its queued jobs are cancelled (its running
    ones too with RETOUCH_CANCEL_RUNNING), its webhooks stop and its file URLs answer 403,
    in every process within a second or two."""
    settings = load_settings(data_dir=data_dir, database_url=database_url)
    require_data_dir(settings, data_dir)
    services = services_or_exit(settings)
    revoked = services.revoke_key(key)
    if not revoked:
        console.print(f"[red]no active key with id or name {key!r}")
        raise typer.Exit(1)
    for record in revoked:
        console.print(f"revoked {record.id} ({record.name})")


@app.command()
def migrate(data_dir: DataDir = None, database_url: DatabaseUrl = None) -> None:
    """Create or upgrade the database schema, then exit (every command also does it at start;
    this lets a deployment do it once, before starting many processes)."""
    settings = load_settings(data_dir=data_dir, database_url=database_url)
    with configuration_checked():
        store = open_store(
            settings.store_url,
            max_attempts=settings.max_attempts,
            webhook_retry_seconds=settings.webhook_retry_seconds,
        )
    store.close()
    console.print("the database schema is up to date", markup=False)


def _flow_help(group: typer.Typer) -> None:
    """The help of every command of `group` (and of its groups) as help_text makes it:
    paragraphs that flow, shown as written."""
    for info in group.registered_commands:
        if info.help is None:
            info.help = help_text(inspect.getdoc(info.callback))
    for sub in group.registered_groups:
        if sub.typer_instance is not None:
            _flow_help(sub.typer_instance)


_flow_help(app)  # the client commands' are made so by register()


def main() -> None:
    app()
