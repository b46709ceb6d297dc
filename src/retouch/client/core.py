"""The SDK's logic, free of I/O: request building, response parsing, error mapping, the
retry and polling policies, and every operation as a flow (see `effects`). `Client` and
`AsyncClient` perform the effects; everything they answer comes from here."""

from __future__ import annotations

import mimetypes
import random
import re
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from os import PathLike
from pathlib import Path, PurePosixPath
from typing import Any, TypeGuard, TypeVar, Unpack
from urllib.parse import quote, urlsplit

import httpx
from httpx_sse import SSEError
from pydantic import BaseModel, ValidationError

from retouch.client import errors, models
from retouch.client.config import ClientConfig
from retouch.client.effects import (
    Close,
    Effect,
    Emit,
    EventStream,
    Flow,
    NextEvent,
    Notify,
    PastDeadline,
    ReadBody,
    ReadFile,
    Send,
    Sleep,
    WriteFile,
)
from retouch.client.events import EventTracker
from retouch.client.images import encode_image, is_pil_image
from retouch.contract import idempotency
from retouch.contract.errors import INVALID_INPUT, NOT_FOUND
from retouch.contract.inputs import DEFAULT_ENDPOINT

M = TypeVar("M", bound=BaseModel)
T = TypeVar("T")

USER_AGENT = "retouch-python"
# Answers worth retrying for a request that is safe to repeat: the server (or a proxy in
# front of it) could not take it now, and nothing was done.
RETRY_STATUSES = frozenset({502, 503, 504})
# The least time a request made during a wait is given, even at the wait's deadline: the
# most a wait can outlast its timeout by, per request.
MIN_REQUEST_TIMEOUT = 0.5

ImageInput = models.ImageInput
OnUpdate = Callable[[models.Status], object]
OnUpload = Callable[[models.Upload], object]
OnFile = Callable[[Path], object]


@dataclass(frozen=True)
class RetryPolicy:
    """How requests that are safe to repeat are retried after a connection error or a
    502/503/504: up to `max_retries` times, with exponential backoff and jitter, never
    sooner than a `Retry-After` header asks and never when it asks for more than
    `max_retry_after` seconds."""

    max_retries: int = 3
    backoff: float = 0.25
    max_backoff: float = 8.0
    max_retry_after: float = 60.0

    def delay(self, attempt: int, retry_after: float | None = None) -> float | None:
        """Seconds to wait before retry number `attempt + 1`; None: do not retry."""
        if attempt >= self.max_retries:
            return None
        if retry_after is not None and retry_after > self.max_retry_after:
            return None
        # Jitter spreads the retries of many clients after a shared outage.
        backoff = min(self.max_backoff, self.backoff * 2.0**attempt) * random.uniform(0.5, 1.0)
        return max(backoff, retry_after or 0.0)


@dataclass(frozen=True)
class PollPolicy:
    """Status polling when no event stream is available: from `initial` seconds, growing by
    `factor` up to `maximum`, back to `initial` when the job changes state, never sooner
    than a `Retry-After` header says. An event stream that is silent for `stream_idle`
    seconds (no event, no keep-alive) is given up for polling."""

    initial: float = 0.2
    factor: float = 1.5
    maximum: float = 5.0
    stream_idle: float = 60.0


class Deadline:
    """The end of a wait, in monotonic seconds (None: wait for ever)."""

    def __init__(self, timeout: float | None) -> None:
        self.timeout = timeout
        self.at = None if timeout is None else time.monotonic() + timeout

    def remaining(self) -> float | None:
        return None if self.at is None else self.at - time.monotonic()

    def passed(self) -> bool:
        return self.at is not None and time.monotonic() >= self.at

    def bound(self, timeout: dict[str, float | None]) -> dict[str, float | None]:
        """A request's timeouts (httpx's `timeout` extension) cut to the time left, but never
        below MIN_REQUEST_TIMEOUT."""
        remaining = self.remaining()
        if remaining is None:
            return timeout
        cap = max(MIN_REQUEST_TIMEOUT, remaining)
        return {
            phase: cap if value is None else min(value, cap) for phase, value in timeout.items()
        }


class _Updates:
    """Performs `effect_of(status)` once per change of a job's status, whichever way it was
    learned: a callback (wait's on_update) or an event handed to an iterator (iter_events)."""

    def __init__(self, effect_of: Callable[[models.Status], Effect | None] | None) -> None:
        self.effect_of = effect_of
        self.last: models.Status | None = None

    @classmethod
    def calling(cls, on_update: OnUpdate | None) -> _Updates:
        if on_update is None:
            return cls(None)
        return cls(lambda status: Notify(on_update, status))

    def seen(self, status: models.Status) -> Flow[None]:
        before, self.last = self.last, status
        if self.effect_of is None:
            return
        if before is None or _progress_key(before) != _progress_key(status):
            effect = self.effect_of(status)
            if effect is not None:
                yield effect


def _progress_key(status: models.Status) -> tuple[object, ...]:
    progress = status.progress
    return (
        status.status,
        status.queue_position,
        progress and (progress.step, progress.total),
        len(status.logs or ()),
    )


def is_url(image: object) -> bool:
    return isinstance(image, str) and image.lower().startswith(("http://", "https://", "data:"))


def _is_path(image: object) -> TypeGuard[str | PathLike[str]]:
    return isinstance(image, str | PathLike) and not is_url(image)


def is_uploaded(image: object) -> bool:
    """Whether an item of `image_urls` is uploaded before the submit: a local path, bytes or
    a PIL image (URLs go as they are; anything else is the server's to judge)."""
    return (
        _is_path(image) or isinstance(image, bytes | bytearray | memoryview) or is_pil_image(image)
    )


def _local_path(image: str | PathLike[str]) -> Path:
    return Path(image).expanduser()


# One segment of an endpoint id: what a URL path carries as it is, and no `.` or `..` (which
# httpx would resolve, sending the submit to another route).
_ENDPOINT_SEGMENT = re.compile(r"(?!\.{1,2}$)[A-Za-z0-9._~-]+")


def _logs_param(with_logs: bool) -> dict[str, str] | None:
    return {"logs": "true"} if with_logs else None


def check_endpoint_id(endpoint: object) -> str:
    """The endpoint id without its outer slashes; TypeError/ValueError for what cannot be one
    (the server answers 400001 for an id it does not serve)."""
    if not isinstance(endpoint, str):
        raise TypeError(f"endpoint must be an endpoint id (str), not {type(endpoint).__name__}")
    cleaned = endpoint.strip("/")
    if not all(_ENDPOINT_SEGMENT.fullmatch(part) for part in cleaned.split("/")):
        hint = ""
        if any(character.isspace() for character in cleaned):
            hint = (
                "; a prompt goes in the input (client.edit(prompt, image_urls) in the SDK, "
                "`retouch edit PROMPT IMAGE...` on the command line)"
            )
        raise errors.InvalidEndpointError(
            None,
            "endpoint",
            f"endpoint {endpoint!r} is not an endpoint id such as {DEFAULT_ENDPOINT} (GET "
            f"/v1/models lists them){hint}",
        )
    return cleaned


def merge_input(input: Mapping[str, Any] | None, fields: Mapping[str, Any]) -> dict[str, Any]:
    """The request body: the `input` mapping (the endpoint's input JSON, as is) and the
    keyword fields; a field given both ways is refused rather than one silently winning."""
    if input is not None and not isinstance(input, Mapping):
        raise TypeError(
            f"input must be a mapping of the endpoint's input fields (its JSON schema), not "
            f"{type(input).__name__}; for a prompt and a list of images write "
            "client.edit(prompt, image_urls)"
        )
    body = dict(input or {})
    twice = sorted(set(body) & set(fields))
    if twice:
        raise TypeError(
            f"{', '.join(twice)}: given both in input and as a keyword argument; give it once"
        )
    body.update(fields)
    return body


def _about(request_id: str, flow: Flow[T]) -> Flow[T]:
    """`flow`, whose SDK errors name `request_id` (when they do not already)."""
    try:
        return (yield from flow)
    except errors.RetouchError as error:
        if error.request_id is None:
            error.request_id = request_id
        raise


def new_idempotency_key() -> str:
    return f"retouch-sdk-{uuid.uuid4().hex}"


def check_idempotency_key(key: str | None) -> None:
    """Raise InvalidInputError (as the server's 422001 would) for a key no server accepts;
    checked before anything is sent (httpx cannot even encode a non-ASCII header)."""
    if key is None or idempotency.is_valid_key(key):
        return
    header, rule = idempotency.HEADER, idempotency.RULE
    raise errors.InvalidInputError(
        None,
        INVALID_INPUT,
        f"invalid input: {header}: {rule}",
        [{"field": header, "path": [header], "message": rule}],
    )


def parse(response: httpx.Response, model: type[M]) -> M:
    try:
        return model.model_validate_json(response.content)
    except ValidationError as error:
        raise errors.ServerError(
            response.status_code,
            None,
            f"unexpected answer from {response.request.method} {response.request.url.path}: "
            f"{error.error_count()} problem(s), first: {error.errors()[0]['msg']}",
        ) from None


def settle(result: models.Result) -> models.Result:
    """A finished job's result; raises when it failed or was cancelled."""
    if result.status == "failed":
        raise errors.JobFailed(result)
    if result.status == "cancelled":
        raise errors.JobCancelled(result)
    return result


def file_extension(url: str, response: httpx.Response) -> str:
    """An output file's extension: the URL's own, else from its content type."""
    suffix = PurePosixPath(urlsplit(url).path).suffix.lstrip(".")
    if suffix:
        return suffix
    guessed = mimetypes.guess_extension(response.headers.get("content-type", "").split(";")[0])
    return (guessed or ".bin").lstrip(".")


class Core:
    """The client's state (server, key, timeouts, policies) and its operations as flows.
    The public methods of Client and AsyncClient are these flows, performed."""

    def __init__(
        self,
        config: ClientConfig,
        *,
        timeout: httpx.Timeout,
        retry: RetryPolicy,
        poll: PollPolicy,
        use_stream: bool,
    ) -> None:
        self.config = config
        self.timeout = timeout
        self.retry = retry
        self.poll = poll
        # Turned off for good once the server shows it has no event stream route.
        self.use_stream = use_stream

    # Requests -------------------------------------------------------------------------

    def request(
        self,
        method: str,
        path: str = "",
        *,
        url: str | None = None,
        json: Any = None,
        params: dict[str, Any] | None = None,
        files: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
        timeout: httpx.Timeout | None = None,
        authenticated: bool = True,
    ) -> httpx.Request:
        merged = {"User-Agent": USER_AGENT, "Accept": "application/json"}
        if authenticated:
            merged["Authorization"] = f"Bearer {self.config.api_key}"
        merged.update(headers or {})
        return httpx.Request(
            method,
            url or self.config.url + path,
            json=json,
            params=params,
            files=files,
            headers=merged,
            # A bare httpx.Request has no timeout: the clients' defaults do not apply to it.
            extensions={"timeout": (timeout or self.timeout).as_dict()},
        )

    def send(
        self, request: httpx.Request, *, retry: bool, deadline: Deadline | None = None
    ) -> Flow[httpx.Response]:
        """Send, retrying (when `retry`: the request is safe to repeat) after connection
        errors and 502/503/504; raises the typed error of any other failure (any httpx
        error as ConnectionError).

        Within a wait (`deadline`), each attempt's timeouts are cut to the time left (see
        `Deadline.bound`), and a retry that would start past the deadline is not made:
        PastDeadline is raised at the deadline instead. An attempt whose connection fails
        once the deadline has passed (its cut timeout ran out) raises PastDeadline too."""
        attempt = 0
        while True:
            if deadline is not None:
                request.extensions["timeout"] = deadline.bound(request.extensions["timeout"])
            try:
                response: httpx.Response = yield Send(request)
            except httpx.HTTPError as error:
                # Only a connection that failed is worth another try: an answer that
                # cannot be decoded would be the same again.
                transport = isinstance(error, httpx.TransportError)
                if transport and deadline is not None and deadline.passed():
                    raise PastDeadline from None
                delay = self.retry.delay(attempt) if retry and transport else None
                if delay is None:
                    raise self._connection_error(request, error, attempt, retry) from error
                yield from self._pause(delay, deadline)
                attempt += 1
                continue
            if response.is_success:
                return response
            failure = errors.error_from_response(response)
            if retry and response.status_code in RETRY_STATUSES:
                delay = self.retry.delay(attempt, failure.retry_after)
                if delay is not None:
                    yield from self._pause(delay, deadline)
                    attempt += 1
                    continue
            raise failure

    @staticmethod
    def _pause(delay: float, deadline: Deadline | None) -> Flow[None]:
        """Sleep before a retry; when the retry would start past the deadline, sleep until
        the deadline and raise PastDeadline."""
        remaining = None if deadline is None else deadline.remaining()
        if remaining is not None and remaining <= delay:
            yield Sleep(max(0.0, remaining))
            raise PastDeadline
        yield Sleep(delay)

    @staticmethod
    def _connection_error(
        request: httpx.Request, error: httpx.HTTPError, attempt: int, retried: bool
    ) -> errors.ConnectionError:
        tries = f" (after {attempt + 1} attempts)" if attempt else ""
        message = (
            f"{request.method} {request.url}: {type(error).__name__}: {error or 'no details'}"
            f"{tries}"
        )
        if not retried and request.method == "POST":
            message += (
                "; the server may have received it: a submit with an idempotency key is "
                "retried safely"
            )
        return errors.ConnectionError(None, None, message)

    def _path(self, request_id: str, action: str) -> str:
        return f"/v1/requests/{quote(request_id, safe='')}/{action}"

    def _get(
        self,
        path: str,
        model: type[M],
        params: dict[str, Any] | None = None,
        *,
        deadline: Deadline | None = None,
    ) -> Flow[M]:
        request = self.request("GET", path, params=params)
        response = yield from self.send(request, retry=True, deadline=deadline)
        return parse(response, model)

    # Operations -----------------------------------------------------------------------

    def submit(
        self,
        endpoint: str = DEFAULT_ENDPOINT,
        input: Mapping[str, Any] | None = None,
        **options: Unpack[models.SubmitOptions],
    ) -> Flow[models.Submission]:
        """Submit a request to `endpoint` and return at once (the clients wrap the
        submission in a request handle). `input` is the endpoint's input JSON as is (as the
        API page writes it); keyword fields (`prompt=`, `image_urls=`, `resolution=`...) may
        stand for or add to it. Local paths, bytes and PIL images in `image_urls` are
        uploaded first. Retried after a connection error or a 502/503/504 only with an
        `idempotency_key` (the server then answers a repeat with the original job instead
        of a second one). `webhook`: a URL the server notifies when the job ends."""
        idempotency_key = options.pop("idempotency_key", None)
        webhook = options.pop("webhook", None)
        on_upload = options.pop("on_upload", None)
        return (
            yield from self._submit(
                endpoint, input, dict(options), idempotency_key, webhook, on_upload
            )
        )

    def _submit(
        self,
        endpoint: str,
        input: Mapping[str, Any] | None,
        fields: Mapping[str, Any],
        idempotency_key: str | None,
        webhook: str | None,
        on_upload: OnUpload | None,
    ) -> Flow[models.Submission]:
        # Everything that can be refused here is, before the first upload.
        endpoint = check_endpoint_id(endpoint)
        check_idempotency_key(idempotency_key)
        body = merge_input(input, fields)
        if isinstance(body.get("image_urls"), list | tuple):
            body["image_urls"] = yield from self.prepare_images(body["image_urls"], on_upload)
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key is not None else None
        request = self.request(
            "POST",
            f"/v1/models/{quote(endpoint, safe='/')}",
            json=body,
            params={"webhook": webhook} if webhook else None,
            headers=headers,
        )
        response = yield from self.send(request, retry=idempotency_key is not None)
        return parse(response, models.Submission)

    def fetch_status(
        self, request_id: str, *, with_logs: bool = False
    ) -> Flow[models.Fetched[models.Status]]:
        """The status and the server's body byte for byte (`.value`, `.body`)."""
        return (yield from self._fetch(request_id, "status", models.Status, with_logs))

    def fetch_result(
        self, request_id: str, *, with_logs: bool = False
    ) -> Flow[models.Fetched[models.Result]]:
        """The result as it is now and the server's body byte for byte (`.value`, `.body`)."""
        return (yield from self._fetch(request_id, "result", models.Result, with_logs))

    def _fetch(
        self, request_id: str, view: str, model: type[M], with_logs: bool
    ) -> Flow[models.Fetched[M]]:
        request = self.request("GET", self._path(request_id, view), params=_logs_param(with_logs))
        response = yield from _about(request_id, self.send(request, retry=True))
        return models.Fetched(parse(response, model), response.content)

    def status(self, request_id: str, *, with_logs: bool = False) -> Flow[models.Status]:
        """The job's status: in_queue (queue_position), in_progress (progress), completed or
        cancelled; `with_logs` adds its log lines (`logs`)."""
        return (yield from self.fetch_status(request_id, with_logs=with_logs)).value

    def result(self, request_id: str, *, with_logs: bool = False) -> Flow[models.Result]:
        """The job's result as it is now (finished or not); never raises for a failed job.
        `with_logs` adds its log lines (`logs`)."""
        return (yield from self.fetch_result(request_id, with_logs=with_logs)).value

    def cancel(self, request_id: str) -> Flow[models.CancelOutcome]:
        """Cancel a queued job (`cancelled` says whether it is, now or already); repeating it
        is harmless, so it is retried like a read."""
        request = self.request("POST", self._path(request_id, "cancel"))
        response = yield from _about(request_id, self.send(request, retry=True))
        return parse(response, models.CancelOutcome)

    def upload(
        self,
        file: ImageInput,
        *,
        filename: str | None = None,
        content_type: str | None = None,
    ) -> Flow[models.Upload]:
        """Upload an image: a path, its bytes or a PIL image (saved as PNG unless it was
        read as JPEG or WEBP); its `url` can go in `image_urls`. Retried like a read: a
        repeated upload only stores the file twice."""
        if isinstance(file, str | PathLike):
            path = _local_path(file)
            data = yield ReadFile(path)
            encoded = encode_image(data)
            name = filename or path.name
            sniffed = encoded.content_type
            if sniffed == "application/octet-stream":
                sniffed = mimetypes.guess_type(name)[0] or sniffed
        else:
            encoded = encode_image(file)  # TypeError for what is not an image
            data, name, sniffed = encoded.data, filename or encoded.filename, encoded.content_type
        kind = content_type or sniffed
        request = self.request("POST", "/v1/files", files={"file": (name, data, kind)})
        response = yield from self.send(request, retry=True)
        return parse(response, models.Upload)

    def list_requests(
        self, *, limit: int | None = None, cursor: str | None = None
    ) -> Flow[models.RequestList]:
        """One page of this key's requests, newest first."""
        # `is not None`: a limit of 0 goes to the server, which refuses it (422).
        pairs = (("limit", limit), ("cursor", cursor))
        params = {name: value for name, value in pairs if value is not None}
        return (yield from self._get("/v1/requests", models.RequestList, params))

    def webhook_secret(self, *, rotate: bool = False) -> Flow[str]:
        """The secret that signs this key's webhook deliveries; `rotate` makes a new one."""
        if not rotate:
            return (yield from self._get("/v1/webhooks/secret", models.WebhookSecret)).secret
        request = self.request("POST", "/v1/webhooks/secret")
        # Not retried: a repeated rotation would replace the secret the caller is given.
        response = yield from self.send(request, retry=False)
        return parse(response, models.WebhookSecret).secret

    def wait(
        self,
        request_id: str,
        *,
        timeout: float | None = None,
        on_update: OnUpdate | None = None,
        with_logs: bool = False,
    ) -> Flow[models.Result]:
        """Wait for the job to finish and return its result; raises JobFailed, JobCancelled,
        or WaitTimeout after `timeout` seconds (the job goes on: call wait again). Follows
        the server's event stream; polls the status when there is none or it drops.
        `on_update(status)` is called on every change (queue position, steps, and with
        `with_logs` each new log line); `with_logs` fills `result.logs` (and `status.logs`)."""
        deadline = Deadline(timeout)
        updates = _Updates.calling(on_update)
        try:
            result = yield from _about(
                request_id, self._watch(request_id, deadline, updates, with_logs)
            )
        except PastDeadline:
            raise errors.WaitTimeout(request_id, deadline.timeout, updates.last) from None
        return settle(result)

    def events(
        self, request_id: str, *, with_logs: bool = False, timeout: float | None = None
    ) -> Flow[None]:
        """Emits a `Queued` or `InProgress` event per status change, then one `Completed`
        with the result (failed or cancelled too: this raises only WaitTimeout, after
        `timeout` seconds, and the errors of the requests). `with_logs`: each event carries
        the log lines that are new since the one before."""
        deadline = Deadline(timeout)
        tracker = EventTracker()

        def emit(status: models.Status) -> Effect | None:
            event = tracker.for_status(status)
            return None if event is None else Emit(event)

        updates = _Updates(emit)
        try:
            result = yield from _about(
                request_id, self._watch(request_id, deadline, updates, with_logs)
            )
        except PastDeadline:
            raise errors.WaitTimeout(request_id, deadline.timeout, updates.last) from None
        yield Emit(tracker.for_result(result))

    def run(
        self,
        endpoint: str = DEFAULT_ENDPOINT,
        input: Mapping[str, Any] | None = None,
        **options: Unpack[models.RunOptions],
    ) -> Flow[models.Result]:
        """Submit to `endpoint` (`input` and keyword fields as `submit` takes them, local
        images uploaded first), wait, return the result.

        The submit carries an idempotency key (a new one unless given), so it is retried
        safely. `on_submitted(submission)` is called before waiting starts: keep its request
        id. After `timeout` seconds of waiting it raises WaitTimeout, and the job goes on
        (resume with `wait(request_id)`), unless `cancel_on_timeout` cancels it first.
        Raises JobFailed or JobCancelled as `wait` does; every error raised once the request
        exists carries its `request_id`."""
        timeout = options.pop("timeout", None)
        cancel_on_timeout = options.pop("cancel_on_timeout", False)
        with_logs = options.pop("with_logs", False)
        on_submitted = options.pop("on_submitted", None)
        on_update = options.pop("on_update", None)
        key = options.pop("idempotency_key", None)
        webhook = options.pop("webhook", None)
        on_upload = options.pop("on_upload", None)
        check_idempotency_key(key or None)  # before new_idempotency_key hides a bad one
        submission = yield from self._submit(
            endpoint, input, dict(options), key or new_idempotency_key(), webhook, on_upload
        )
        request_id = submission.request_id
        if on_submitted is not None:
            yield Notify(on_submitted, submission)
        waited = self.wait(request_id, timeout=timeout, on_update=on_update, with_logs=with_logs)
        try:
            return (yield from waited)
        except errors.WaitTimeout as late:
            if not cancel_on_timeout:
                raise
            try:
                outcome = yield from self.cancel(request_id)
            except errors.RetouchError as failure:
                raise errors.WaitTimeout(
                    request_id, late.timeout, late.status, cancel_error=failure
                ) from failure
            raise errors.WaitTimeout(
                request_id, late.timeout, late.status, cancel_outcome=outcome
            ) from None

    def edit(
        self,
        prompt: str,
        image_urls: Sequence[ImageInput],
        *,
        endpoint: str = DEFAULT_ENDPOINT,
        **options: Unpack[models.EditOptions],
    ) -> Flow[models.Result]:
        """`run(endpoint, {"prompt": prompt, "image_urls": image_urls, **fields})`: edit the
        images (URLs, local paths, bytes or PIL images) from a prompt, wait, return the
        result."""
        if isinstance(image_urls, str | bytes | PathLike) or is_pil_image(image_urls):
            raise TypeError(
                "image_urls must be a list of images (URLs, paths, bytes or PIL images): "
                "write [image] for one"
            )
        body = {"prompt": prompt, "image_urls": list(image_urls)}
        return (yield from self.run(endpoint, body, **options))

    def prepare_images(
        self, images: Sequence[Any], on_upload: OnUpload | None = None
    ) -> Flow[list[Any]]:
        """`image_urls` ready to send: URLs as they are, local files (all checked to exist
        before the first upload), bytes and PIL images uploaded and replaced by their URLs;
        anything else is left for the server to judge. `on_upload(upload)` is called after
        each upload."""
        missing = [
            str(image) for image in images if _is_path(image) and not _local_path(image).is_file()
        ]
        if missing:
            raise FileNotFoundError(
                f"image_urls: no such file: {', '.join(missing)} (an image is an http(s) or "
                "data: URL, or a local file, which is uploaded first)"
            )
        urls = []
        for image in images:
            if not is_uploaded(image):
                urls.append(image)
                continue
            upload = yield from self.upload(image)
            if on_upload is not None:
                yield Notify(on_upload, upload)
            urls.append(upload.url)
        return urls

    def download(
        self,
        result: models.Result,
        directory: str | PathLike[str] = ".",
        *,
        on_file: OnFile | None = None,
    ) -> Flow[list[Path]]:
        """Save the result's images in `directory` as `<request_id>-<n>.<ext>` (n from 0, in
        output order) and return their paths. The URLs are signed: no key is sent."""
        paths = []
        for index, url in enumerate(result.images):
            request = self.request("GET", url=url, headers={"Accept": "*/*"}, authenticated=False)
            response = yield from self.send(request, retry=True)
            path = Path(directory) / f"{result.request_id}-{index}.{file_extension(url, response)}"
            yield WriteFile(path, response.content)
            if on_file is not None:
                yield Notify(on_file, path)
            paths.append(path)
        return paths

    # Waiting --------------------------------------------------------------------------

    def _watch(
        self, request_id: str, deadline: Deadline, updates: _Updates, with_logs: bool
    ) -> Flow[models.Result]:
        """The finished job's result (whatever its outcome), from the event stream, else by
        polling; raises PastDeadline at the deadline."""
        result = None
        if self.use_stream:
            result = yield from self._follow_stream(request_id, deadline, updates, with_logs)
        if result is None:
            yield from self._poll(request_id, deadline, updates, with_logs)
            request = self.request(
                "GET", self._path(request_id, "result"), params=_logs_param(with_logs)
            )
            response = yield from self.send(request, retry=True, deadline=deadline)
            result = parse(response, models.Result)
        return result

    def _follow_stream(
        self, request_id: str, deadline: Deadline, updates: _Updates, with_logs: bool
    ) -> Flow[models.Result | None]:
        """The result from the job's event stream; None when the stream is unavailable or
        ends without one (the caller polls instead)."""
        remaining = deadline.remaining()
        idle = self.poll.stream_idle if remaining is None else min(remaining, self.poll.stream_idle)
        if idle <= 0:
            return None
        request = self.request(
            "GET",
            self._path(request_id, "stream"),
            params=_logs_param(with_logs),
            headers={"Accept": "text/event-stream", "Cache-Control": "no-store"},
            timeout=httpx.Timeout(
                connect=self.timeout.connect,
                read=idle,
                write=self.timeout.write,
                pool=self.timeout.pool,
            ),
        )
        request.extensions["timeout"] = deadline.bound(request.extensions["timeout"])
        try:
            response: httpx.Response = yield Send(request, stream=True)
        except httpx.HTTPError:
            return None
        try:
            result = yield from self._read_stream(response, deadline, updates)
        except Exception:
            # Not in a `finally`: a flow being closed (GeneratorExit) must not yield; its
            # driver closes the stream then.
            yield Close(response)
            raise
        yield Close(response)
        return result

    def _read_stream(
        self, response: httpx.Response, deadline: Deadline, updates: _Updates
    ) -> Flow[models.Result | None]:
        content_type = response.headers.get("content-type", "")
        if response.status_code != 200 or not content_type.startswith("text/event-stream"):
            try:
                yield ReadBody(response)
            except httpx.HTTPError:
                return None  # unreadable: polling tells what is wrong
            self._stream_refused(response)
            return None
        # Reading past the deadline raises PastDeadline (see `wait`).
        events = EventStream(response, deadline.at)
        while True:
            try:
                event = yield NextEvent(events)
            except (httpx.HTTPError, SSEError):
                return None
            if event is None:
                return None
            if event.event == "result":
                try:
                    return models.Result.model_validate_json(event.data)
                except ValidationError:
                    return None  # fetched from /result instead
            if event.event == "status":
                try:
                    status = models.Status.model_validate_json(event.data)
                except ValidationError:
                    continue
                yield from updates.seen(status)

    def _stream_refused(self, response: httpx.Response) -> None:
        """After a stream request that got no event stream: remember when the server has no
        such route; raise what polling would raise anyway (a bad key, an unknown id)."""
        envelope = errors.error_body(response)
        code = envelope.error_code if envelope is not None else None
        status = response.status_code
        if (status == 404 and code != NOT_FOUND) or status == 405:
            self.use_stream = False
        elif status < 500 and not response.is_success:
            raise errors.error_from_response(response)

    def _poll(
        self, request_id: str, deadline: Deadline, updates: _Updates, with_logs: bool
    ) -> Flow[models.Status]:
        """Poll the status until the job has finished (or raise PastDeadline)."""
        interval = self.poll.initial
        while True:
            request = self.request(
                "GET", self._path(request_id, "status"), params=_logs_param(with_logs)
            )
            response = yield from self.send(request, retry=True, deadline=deadline)
            status = parse(response, models.Status)
            changed_state = updates.last is not None and updates.last.status != status.status
            yield from updates.seen(status)
            if status.finished:
                return status
            if changed_state:
                interval = self.poll.initial
            pause = max(interval, errors.retry_after(response.headers) or 0.0)
            remaining = deadline.remaining()
            if remaining is not None and remaining < pause:
                # Polling sooner than Retry-After asks is not allowed: give up at the deadline.
                yield Sleep(max(0.0, remaining))
                raise PastDeadline
            yield Sleep(pause)
            interval = min(self.poll.maximum, interval * self.poll.factor)
