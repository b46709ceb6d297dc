"""The client commands of `retouch`: edit, run, wait, status, result, cancel, upload, requests
and webhook-secret, on the SDK's `Client`.

The server URL and the key come from `--url` / `--api-key`, else RETOUCH_URL /
RETOUCH_API_KEY, else the config file (`retouch.client.config`). Results and saved paths go
to standard output; progress, the request id, the job's warnings (`warning: <text>`) and
errors (`error <code>: <message>`) go to standard error. `status` and `result` print the
server's JSON body as it sent it (`--pretty` indents it).

The exit codes are EXIT_CODES_HELP below (also shown by `retouch --help` and each client
command's help).
"""

from __future__ import annotations

import functools
import inspect
import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    Progress,
    SpinnerColumn,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)

from retouch.client import errors
from retouch.client.clients import Client
from retouch.client.core import is_uploaded, new_idempotency_key, settle
from retouch.client.models import Fetched, Result, Status, Submission, Upload
from retouch.contract.inputs import DEFAULT_ENDPOINT

EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_AUTH = 3
EXIT_NOT_FOUND = 4
EXIT_CANCELLED = 5
EXIT_TIMEOUT = 6
EXIT_SERVER = 7
EXIT_CONFLICT = 8
EXIT_INTERRUPTED = 130  # the shell's convention for SIGINT

# Shown as written, each line at most 74 characters: readable at 80 columns.
EXIT_CODES_HELP = """\
Exit codes of the client commands:
  0    done
  1    the job failed, or the content policy withheld some of its outputs
       (the others are saved)
  2    usage or invalid input: bad flags, a missing file, 400/413/422 from
       the server, a bad config file
  3    authentication: no API key, an unusable one (not visible ASCII), or
       the server refused it (401/403)
  4    not found: no such request id (for this key)
  5    the job was cancelled
  6    timed out waiting (or `result` of an unfinished job): the job goes
       on; resume with `retouch wait ID`
  7    server or connection error (5xx, 429, unreachable), or an
       unexpected error in the client (`error: <message>`)
  8    conflict: 409 (an idempotency key reused with another body), or
       `cancel` of a job that can no longer be cancelled (one already
       cancelled exits 0)
  130  interrupted (Ctrl-C): a submitted job goes on; resume with
       `retouch wait ID`"""

EXAMPLES_HELP = """\
Examples:
  retouch serve                     the API and a worker; prints a key
  export RETOUCH_API_KEY=rtk_...    the key the client commands send
  retouch edit "make it snow" photo.jpg -o out/
  retouch edit "add a hat" https://example.com/a.png --resolution 2K
  retouch wait ID                   resume after a timeout or Ctrl-C
  retouch result ID --pretty        the result's JSON, indented
  retouch keys create --name alice  another API key"""


# False under TYPER_USE_RICH=0: typer then leaves the help to click, which takes it as plain
# text (no markup to escape) and rewraps every paragraph not marked with \b.
_RICH_HELP = bool(getattr(typer.core, "HAS_RICH", True))


def _shown(text: str) -> str:
    return escape(text) if _RICH_HELP else text


def help_text(text: str | None) -> str:
    """A docstring as help: each paragraph on one line (typer's rich mode keeps single line
    breaks in places, which split sentences mid-line), and shown as written (brackets are
    rich markup to typer: `[env X]` would vanish)."""
    paragraphs = inspect.cleandoc(text or "").split("\n\n")
    return "\n\n".join(_shown(" ".join(paragraph.split())) for paragraph in paragraphs)


def verbatim(text: str) -> str:
    """An option's help shown as written (rich markup escaped)."""
    return _shown(text)


def epilog(text: str) -> str:
    """An epilog shown as written, its lines and their indentation included: typer dedents
    an epilog's lines after the first (inspect.cleandoc) by their common indentation, so the
    first line is left empty (cleandoc drops it) for the heading to count as a line of no
    indentation. Click's plain help keeps each paragraph as it is after a \b line."""
    if not _RICH_HELP:
        return "\n\n".join(f"\b\n{paragraph}" for paragraph in text.split("\n\n"))
    return "\n" + escape(text)


# Most specific first: the first class an error is an instance of gives its exit code.
_EXIT_CODES: list[tuple[type[BaseException], int]] = [
    (errors.JobFailed, EXIT_FAILED),
    (errors.JobCancelled, EXIT_CANCELLED),
    (errors.WaitTimeout, EXIT_TIMEOUT),
    (errors.MissingApiKeyError, EXIT_AUTH),
    (errors.InvalidApiKeyError, EXIT_AUTH),
    (errors.ConfigurationError, EXIT_USAGE),
    (errors.AuthenticationError, EXIT_AUTH),
    (errors.PermissionDeniedError, EXIT_AUTH),
    (errors.NotFoundError, EXIT_NOT_FOUND),
    (errors.ConflictError, EXIT_CONFLICT),
    (errors.BadRequestError, EXIT_USAGE),
    # Before OSError: the SDK's connection error is also the builtin ConnectionError.
    (errors.ConnectionError, EXIT_SERVER),
    (OSError, EXIT_USAGE),  # a local file: missing, unreadable, or an unwritable -o folder
]

stderr = Console(stderr=True, soft_wrap=True, highlight=False, emoji=False)

Url = Annotated[
    str | None,
    typer.Option(
        "--url", help="Server URL (else RETOUCH_URL, the config file, http://127.0.0.1:8000)"
    ),
]
ApiKey = Annotated[
    str | None, typer.Option("--api-key", help="API key (else RETOUCH_API_KEY, the config file)")
]
JsonOutput = Annotated[
    bool, typer.Option("--json", help="Print one JSON object on standard output")
]
NoProgress = Annotated[bool, typer.Option("--no-progress", help="No progress bar")]
Pretty = Annotated[
    bool,
    typer.Option("--pretty", help="Indent the JSON (else it is printed as the server sent it)"),
]
OutputDir = Annotated[
    Path, typer.Option("--output", "-o", help="Folder to save the outputs in", file_okay=False)
]
Timeout = Annotated[
    float | None,
    typer.Option(
        help="Seconds to wait for the job; then exit 6 (the job goes on: `retouch wait ID`)"
    ),
]
RequestId = Annotated[str, typer.Argument(help="The request id")]
Webhook = Annotated[str | None, typer.Option(help="URL to notify when it ends")]
IdempotencyKey = Annotated[
    str | None, typer.Option(help="Repeat a submit safely: the same key, the same job")
]
NoWait = Annotated[
    bool,
    typer.Option(
        "--no-wait", help="Submit, print the request id and exit (then: `retouch wait ID`)"
    ),
]
NoDownload = Annotated[
    bool,
    typer.Option("--no-download", help="Wait, then print the outputs' URLs instead of saving"),
]


def exit_code(error: BaseException) -> int:
    for kind, code in _EXIT_CODES:
        if isinstance(error, kind):
            return code
    return EXIT_SERVER


def _label(error: BaseException) -> str:
    """The `<code>` of `error <code>: <message>`: the server's or the job's code, else a
    name for the kind of local failure."""
    if isinstance(error, errors.RetouchError) and error.error_code is not None:
        return str(error.error_code)
    if isinstance(error, errors.MissingApiKeyError):
        return "no_api_key"
    if isinstance(error, errors.InvalidApiKeyError):
        return "bad_api_key"
    if isinstance(error, errors.ConfigurationError):
        return "config"
    if isinstance(error, errors.ConnectionError):
        return "connection"
    if isinstance(error, errors.RetouchError):
        return str(error.status_code or "error")
    return "file"


def _message(error: BaseException) -> str:
    if isinstance(error, errors.WaitTimeout):
        return _timeout_message(error)
    if isinstance(error, errors.RetouchError):
        return error.message
    if isinstance(error, OSError) and error.filename is not None:
        return f"{error.strerror}: {error.filename}"
    return str(error)


def _timeout_message(error: errors.WaitTimeout) -> str:
    """The CLI's own words for a timeout: the SDK's name `client.wait(…)`, which a shell
    user cannot call."""
    rid = error.request_id
    after = f" after {error.timeout:g} s" if error.timeout is not None else ""
    state = f" (still {error.status.status})" if error.status is not None else ""
    return (
        f"request {rid} has not finished{after}{state}; it goes on: resume with "
        f"`retouch wait {rid}`"
    )


def _detail_lines(error: BaseException) -> list[str]:
    detail = error.detail if isinstance(error, errors.RetouchError) else None
    if not isinstance(detail, list):
        return []
    lines = []
    for item in detail:
        is_field = isinstance(item, dict)
        lines.append(f"{item.get('field', '?')}: {item.get('message')}" if is_field else str(item))
    return lines


def _dump(model: Any) -> dict[str, Any]:
    dumped: dict[str, Any] = model.model_dump(mode="json", by_alias=True, exclude_none=True)
    return dumped


def print_json(value: Any) -> None:
    sys.stdout.write(json.dumps(value, indent=2, ensure_ascii=False) + "\n")
    sys.stdout.flush()


def _error_json(error: BaseException) -> dict[str, Any]:
    body: dict[str, Any] = {}
    request_id = getattr(error, "request_id", None)
    if request_id is not None:
        body["request_id"] = request_id
    result = getattr(error, "result", None)
    if isinstance(result, Result):
        body.update(status=result.status, files=[], result=_dump(result))
    body["error"] = {
        "code": _label(error),
        "message": _message(error),
        "status_code": getattr(error, "status_code", None),
        "detail": getattr(error, "detail", None),
    }
    return body


def fail(code: int, label: str, message: str) -> typer.Exit:
    stderr.print(f"error {label}: {message}", markup=False)
    return typer.Exit(code)


@contextmanager
def reported(json_output: bool = False) -> Iterator[None]:
    """Turn an SDK or local file error into `error <code>: <message>` on standard error
    (and a JSON object with --json) and its exit code."""
    try:
        yield
    except (errors.RetouchError, OSError) as error:
        stderr.print(f"error {_label(error)}: {_message(error)}", markup=False)
        for line in _detail_lines(error):
            stderr.print(f"  {line}", markup=False)
        if json_output:
            print_json(_error_json(error))
        raise typer.Exit(exit_code(error)) from None


# A progress phase's description once it has ended.
_ENDED = {"upload": "uploaded", "queue": "queued", "edit": "edited", "download": "downloaded"}


class ProgressView:
    """Progress on standard error: a rich progress display when it is a terminal (and
    progress is wanted); the request id line in any case, so a user can always resume.

    One task (line) per phase: uploading, in queue, editing (the denoising steps once
    known), downloading. A phase that ends is completed (a tick, its clock stopped) and
    stays in view; the next one starts its own clock. A phase of unknown length (the
    queue, an edit before its steps are known) is indeterminate: its spinner, bar and clock
    keep moving. The whole display goes once the command is done."""

    def __init__(self, enabled: bool) -> None:
        self._progress = (
            Progress(
                SpinnerColumn(finished_text="✓"),
                TextColumn("{task.description}"),
                BarColumn(),
                TextColumn("{task.fields[count]}"),
                TimeElapsedColumn(),
                console=stderr,
                transient=True,
            )
            if enabled and stderr.is_terminal
            else None
        )
        self._phase: str | None = None
        self._task: TaskID | None = None
        self._done = 0
        self._total = 0

    def __enter__(self) -> ProgressView:
        if self._progress is not None:
            self._progress.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def stop(self) -> None:
        if self._progress is not None:
            self._progress.stop()

    def _show(
        self, phase: str, description: str, completed: int = 0, total: int | None = None
    ) -> None:
        """Show `phase`: its task updated, or (another phase) the current one ended and a
        new task started, with its own clock."""
        if self._progress is None:
            return
        count = f"{completed}/{total}" if total else ""
        if phase != self._phase or self._task is None:
            self._end_phase()
            self._phase = phase
            self._task = self._progress.add_task(
                description, total=total, completed=completed, count=count
            )
            return
        self._progress.update(
            self._task, description=description, completed=completed, total=total, count=count
        )

    def _end_phase(self) -> None:
        """Complete the current phase's task: full, ticked, its clock stopped."""
        if self._progress is None or self._task is None or self._phase is None:
            return
        task = next(task for task in self._progress.tasks if task.id == self._task)
        total = task.total or 1
        count = f"{int(task.total)}/{int(task.total)}" if task.total else ""
        self._progress.update(
            self._task,
            description=_ENDED.get(self._phase, self._phase),
            total=total,
            completed=total,
            count=count,
        )
        self._progress.stop_task(self._task)
        self._phase = self._task = None

    def uploading(self, total: int) -> None:
        self._done, self._total = 0, total
        if total:
            self._show("upload", "uploading", 0, total)

    def uploaded(self, upload: Upload) -> None:
        self._done += 1
        self._show("upload", "uploading", self._done, self._total)

    def submitted(self, submission: Submission) -> None:
        rid = submission.request_id
        stderr.print(f"request {rid} submitted (resume with: retouch wait {rid})", markup=False)
        self._end_phase()

    def update(self, status: Status) -> None:
        if status.status == "in_queue":
            position = status.queue_position
            where = f" (position {position})" if position is not None else ""
            self._show("queue", f"in queue{where}")
        elif status.status == "in_progress":
            progress = status.progress
            if progress is not None:
                self._show("edit", "editing", progress.step, progress.total)
            else:
                self._show("edit", "editing")
        else:  # finished
            self._end_phase()

    def downloading(self, total: int) -> None:
        self._done, self._total = 0, total
        self._show("download", "downloading", 0, total)

    def downloaded(self, path: Path) -> None:
        self._done += 1
        self._show("download", "downloading", self._done, self._total)


def open_client(url: str | None, api_key: str | None) -> Client:
    return Client(url, api_key)


def print_body(body: bytes, pretty: bool) -> None:
    """The server's JSON body on standard output: byte for byte (a newline added only on a
    terminal), or with `pretty` indented, its keys in the server's order."""
    if pretty:
        data = (json.dumps(json.loads(body), indent=2, ensure_ascii=False) + "\n").encode()
    elif sys.stdout.isatty() and not body.endswith(b"\n"):
        data = body + b"\n"
    else:
        data = body
    sys.stdout.flush()
    sys.stdout.buffer.write(data)
    sys.stdout.buffer.flush()


def print_warnings(result: Result) -> None:
    """What the server said about the job besides its outputs (e.g. that a preview model
    made them, or a field this engine ignores): on standard error, one per line."""
    for warning in result.warnings:
        stderr.print(f"warning: {warning}", markup=False)


def save_and_report(
    client: Client,
    view: ProgressView,
    result: Result,
    output_dir: Path,
    json_output: bool,
    body: bytes | None = None,
    *,
    download: bool = True,
) -> None:
    """Save a finished job's outputs and print their paths (or, without `download`, their
    URLs; or the JSON summary, whose `result` is the server's `body` when given), and its
    warnings; exit 1 when the content policy withheld some of them."""
    files: list[Path] = []
    if download:
        view.downloading(len(result.images))
        files = client.download(result, output_dir, on_file=view.downloaded)
    view.stop()
    print_warnings(result)
    if json_output:
        print_json(
            {
                "request_id": result.request_id,
                "status": result.status,
                "files": [str(path) for path in files],
                "warnings": list(result.warnings),
                "result": _dump(result) if body is None else json.loads(body),
            }
        )
    else:
        for line in files if download else result.images:
            print(line, flush=True)
    if result.withheld:
        generated = len(result.has_nsfw_concepts or [])
        raise fail(
            EXIT_FAILED,
            "withheld",
            f"{result.withheld} of {generated} outputs of request {result.request_id} were "
            "withheld by the content policy (safety_tolerance); the others are saved",
        )


def submit_and_finish(
    endpoint: str,
    body: dict[str, Any],
    *,
    output_dir: Path,
    timeout: float | None,
    webhook: str | None,
    idempotency_key: str | None,
    json_output: bool,
    no_progress: bool,
    no_wait: bool,
    no_download: bool,
    url: str | None,
    api_key: str | None,
) -> None:
    """`edit` and `run`: upload local images, submit; then print the request id
    (`no_wait`), or wait and save the outputs (or print their URLs: `no_download`)."""
    # Always a key: a submit whose answer is lost is then retried without a second job.
    key = idempotency_key or new_idempotency_key()
    images = body.get("image_urls")
    local = [image for image in images if is_uploaded(image)] if isinstance(images, list) else []
    with (
        reported(json_output),
        ProgressView(not no_progress) as view,
        open_client(url, api_key) as client,
    ):
        view.uploading(len(local))
        if no_wait:
            handle = client.submit(
                endpoint, body, on_upload=view.uploaded, webhook=webhook, idempotency_key=key
            )
            view.stop()
            if handle.submission is not None:
                view.submitted(handle.submission)
            if json_output and handle.submission is not None:
                print_json(_dump(handle.submission))
            else:
                print(handle.request_id, flush=True)
            return
        result = client.run(
            endpoint,
            body,
            timeout=timeout,
            on_upload=view.uploaded,
            on_submitted=view.submitted,
            on_update=view.update,
            webhook=webhook,
            idempotency_key=key,
        )
        save_and_report(client, view, result, output_dir, json_output, download=not no_download)


def edit(
    prompt: Annotated[str, typer.Argument(help="What to change in the images")],
    images: Annotated[
        list[str],
        typer.Argument(help="1–20 images: local files (uploaded first) or http(s)/data: URLs"),
    ],
    output_dir: OutputDir = Path("."),
    aspect_ratio: Annotated[
        str | None, typer.Option(help="auto 21:9 16:9 3:2 4:3 5:4 1:1 4:5 3:4 2:3 9:16")
    ] = None,
    resolution: Annotated[str | None, typer.Option(help="0.5K 1K 2K 4K")] = None,
    num_images: Annotated[int | None, typer.Option(help="Images to make, 1–4")] = None,
    output_format: Annotated[str | None, typer.Option("--format", help="png jpeg webp")] = None,
    seed: Annotated[int | None, typer.Option(help="Image k uses seed + k")] = None,
    safety_tolerance: Annotated[
        int | None, typer.Option(help="1 (strictest) to 6 (most permissive)")
    ] = None,
    endpoint: Annotated[str, typer.Option(help="The model endpoint")] = DEFAULT_ENDPOINT,
    timeout: Timeout = None,
    webhook: Webhook = None,
    idempotency_key: IdempotencyKey = None,
    json_output: JsonOutput = False,
    no_progress: NoProgress = False,
    no_wait: NoWait = False,
    no_download: NoDownload = False,
    url: Url = None,
    api_key: ApiKey = None,
) -> None:
    """Edit images from a prompt: upload local files, submit, wait, save the outputs as
    <request_id>-<n>.<ext> and print their paths (the job's warnings go to standard
    error)."""
    chosen = {
        "num_images": num_images,
        "seed": seed,
        "aspect_ratio": aspect_ratio,
        "resolution": resolution,
        "output_format": output_format,
        "safety_tolerance": safety_tolerance,
    }
    fields = {name: value for name, value in chosen.items() if value is not None}
    submit_and_finish(
        endpoint,
        {"prompt": prompt, "image_urls": list(images), **fields},
        output_dir=output_dir,
        timeout=timeout,
        webhook=webhook,
        idempotency_key=idempotency_key,
        json_output=json_output,
        no_progress=no_progress,
        no_wait=no_wait,
        no_download=no_download,
        url=url,
        api_key=api_key,
    )


def read_input(input_json: str | None, input_file: str | None) -> dict[str, Any]:
    """The input object of `run`, from --input or --input-file (- : standard input)."""
    if (input_json is None) == (input_file is None):
        raise fail(
            EXIT_USAGE,
            "usage",
            "give the input once: --input JSON, or --input-file FILE (- for standard input)",
        )
    source = "--input"
    text = input_json
    if input_file is not None:
        source = "standard input" if input_file == "-" else input_file
        try:
            text = sys.stdin.read() if input_file == "-" else Path(input_file).read_text("utf-8")
        except (OSError, UnicodeDecodeError) as error:
            raise fail(EXIT_USAGE, "input", f"cannot read {source}: {error}") from None
    try:
        value = json.loads(text or "")
    except ValueError as error:
        raise fail(EXIT_USAGE, "input", f"{source} is not valid JSON: {error}") from None
    if not isinstance(value, dict):
        raise fail(
            EXIT_USAGE,
            "input",
            f"{source} must be a JSON object of the endpoint's input fields, such as "
            '{"prompt": "make it snow", "image_urls": ["photo.jpg"]}',
        )
    return value


def run(
    endpoint: Annotated[
        str,
        typer.Argument(help="The endpoint id, e.g. google/nano-banana-2/edit (GET /v1/models)"),
    ],
    input_json: Annotated[
        str | None,
        typer.Option("--input", "-i", help="The input as JSON, as the API page writes it"),
    ] = None,
    input_file: Annotated[
        str | None,
        typer.Option("--input-file", "-f", help="The input JSON from a file (- : standard input)"),
    ] = None,
    output_dir: OutputDir = Path("."),
    timeout: Timeout = None,
    webhook: Webhook = None,
    idempotency_key: IdempotencyKey = None,
    json_output: JsonOutput = False,
    no_progress: NoProgress = False,
    no_wait: NoWait = False,
    no_download: NoDownload = False,
    url: Url = None,
    api_key: ApiKey = None,
) -> None:
    """Run an endpoint on an input JSON (its schema: GET /v1/models/ENDPOINT/schema): local
    files in image_urls (relative to the current folder) are uploaded first; then wait and
    save the outputs like `edit`."""
    submit_and_finish(
        endpoint,
        read_input(input_json, input_file),
        output_dir=output_dir,
        timeout=timeout,
        webhook=webhook,
        idempotency_key=idempotency_key,
        json_output=json_output,
        no_progress=no_progress,
        no_wait=no_wait,
        no_download=no_download,
        url=url,
        api_key=api_key,
    )


def wait(
    request_id: RequestId,
    output_dir: OutputDir = Path("."),
    timeout: Timeout = None,
    json_output: JsonOutput = False,
    no_progress: NoProgress = False,
    url: Url = None,
    api_key: ApiKey = None,
) -> None:
    """Wait for a request (e.g. after a timeout), then save its outputs like `edit`."""
    with (
        reported(json_output),
        ProgressView(not no_progress) as view,
        open_client(url, api_key) as client,
    ):
        result = client.wait(request_id, timeout=timeout, on_update=view.update)
        save_and_report(client, view, result, output_dir, json_output)


def status(
    request_id: RequestId, pretty: Pretty = False, url: Url = None, api_key: ApiKey = None
) -> None:
    """Print a request's status: the server's JSON, as it sent it."""
    with reported(), open_client(url, api_key) as client:
        fetched: Fetched[Status] = client.fetch_status(request_id)
        print_body(fetched.body, pretty)


def result(
    request_id: RequestId,
    output_dir: Annotated[
        Path | None,
        typer.Option("--output", "-o", help="Save the outputs here and print their paths"),
    ] = None,
    json_output: JsonOutput = False,
    pretty: Pretty = False,
    url: Url = None,
    api_key: ApiKey = None,
) -> None:
    """Print a request's result (the server's JSON, as it sent it), or with -o save its
    outputs (and print its warnings). Exits like `wait`: 1 failed, 5 cancelled, 6 not
    finished yet."""
    with reported(json_output and output_dir is not None), open_client(url, api_key) as client:
        fetched: Fetched[Result] = client.fetch_result(request_id)
        found = fetched.value
        if output_dir is None:
            print_body(fetched.body, pretty)
        if not found.finished:
            raise fail(
                EXIT_TIMEOUT,
                "unfinished",
                f"request {request_id} is {found.status}: wait for it with "
                f"`retouch wait {request_id}`",
            )
        settle(found)
        if output_dir is not None:
            view = ProgressView(False)
            save_and_report(client, view, found, output_dir, json_output, fetched.body)


def cancel(
    request_id: RequestId, pretty: Pretty = False, url: Url = None, api_key: ApiKey = None
) -> None:
    """Cancel a queued request and print the outcome (JSON). Exits 0 when it is cancelled
    (also already: repeating a cancel is harmless), 8 when it can no longer be
    cancelled."""
    with reported(), open_client(url, api_key) as client:
        outcome = client.cancel(request_id)
        # The SDK gives no cancel body as sent: its fields (no timestamps), compact as the
        # server writes them, like `status` and `result`.
        dumped = _dump(outcome)
        print_body(json.dumps(dumped, ensure_ascii=False, separators=(",", ":")).encode(), pretty)
        # `cancelled` is also true for a job cancelled before (outcome not_cancellable).
        if not outcome.cancelled:
            raise fail(
                EXIT_CONFLICT,
                outcome.outcome,
                f"request {request_id} is {outcome.status}: only a queued request can be cancelled",
            )


def upload(
    file: Annotated[Path, typer.Argument(help="An image file (JPEG, PNG or WEBP)")],
    json_output: JsonOutput = False,
    url: Url = None,
    api_key: ApiKey = None,
) -> None:
    """Upload an image and print its URL, usable in image_urls until it expires."""
    with reported(json_output), open_client(url, api_key) as client:
        uploaded = client.upload(file)
        if json_output:
            print_json(_dump(uploaded))
        else:
            print(uploaded.url)


def requests(
    limit: Annotated[int | None, typer.Option(help="At most this many")] = None,
    cursor: Annotated[str | None, typer.Option(help="The next page, from a previous list")] = None,
    json_output: JsonOutput = False,
    url: Url = None,
    api_key: ApiKey = None,
) -> None:
    """List your requests, newest first."""
    with reported(json_output), open_client(url, api_key) as client:
        page = client.list_requests(limit=limit, cursor=cursor)
    if json_output:
        print_json(_dump(page))
        return
    # Plain aligned columns: whole ids at any width, and easy to cut(1) or grep.
    print(f"{'request id':<36}  {'status':<11}  {'created (UTC)':<19}  endpoint")
    for item in page.requests:
        created = f"{item.created_at:%Y-%m-%d %H:%M:%S}" if item.created_at else "-"
        print(f"{item.request_id:<36}  {item.status:<11}  {created:<19}  {item.endpoint or '-'}")
    if page.next_cursor:
        stderr.print(f"more: retouch requests --cursor {page.next_cursor}", markup=False)


def webhook_secret(
    rotate: Annotated[bool, typer.Option("--rotate", help="Replace it with a new one")] = False,
    url: Url = None,
    api_key: ApiKey = None,
) -> None:
    """Print the secret that signs your webhook deliveries."""
    with reported(), open_client(url, api_key) as client:
        print(client.webhook_secret(rotate=rotate))


COMMANDS: dict[str, Callable[..., None]] = {
    "edit": edit,
    "run": run,
    "wait": wait,
    "status": status,
    "result": result,
    "cancel": cancel,
    "upload": upload,
    "requests": requests,
    "webhook-secret": webhook_secret,
}


def last_resort(command: Callable[..., None]) -> Callable[..., None]:
    """`command`, with any exception that `reported` does not know (a bug, an httpx or
    library error the SDK does not map) printed as `error: <message>` and exit 7 instead of
    a traceback and exit 1, which means "the job failed"."""

    @functools.wraps(command)
    def guarded(*args: Any, **kwargs: Any) -> None:
        try:
            command(*args, **kwargs)
        except (typer.Exit, typer.Abort, typer.TyperException):
            raise  # the command's own exit, or typer's usage errors
        except KeyboardInterrupt:
            # Not typer's "Aborted!" and exit 1, which would read as "the job failed".
            stderr.print(
                "interrupted: a submitted request goes on; resume with `retouch wait ID` "
                "(the id was printed when it was submitted)",
                markup=False,
            )
            raise typer.Exit(EXIT_INTERRUPTED) from None
        except Exception as error:
            message = f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
            stderr.print(f"error: {message}", markup=False)
            if kwargs.get("json_output"):
                fields = {
                    "code": "internal",
                    "message": message,
                    "status_code": None,
                    "detail": None,
                }
                print_json({"error": fields})
            raise typer.Exit(EXIT_SERVER) from None

    return guarded


def register(app: typer.Typer) -> None:
    """Add the client commands to the `retouch` command, each help with the exit codes."""
    for name, command in COMMANDS.items():
        app.command(name, help=help_text(command.__doc__), epilog=epilog(EXIT_CODES_HELP))(
            last_resort(command)
        )
