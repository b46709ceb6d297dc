"""The SDK's logic, free of I/O: request building, response parsing, error mapping, the
retry and polling policies, and every operation as a flow (see `effects`). `Client` and
`AsyncClient` perform the effects; everything they answer comes from here."""

from __future__ import annotations

import mimetypes
import random
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from os import PathLike
from pathlib import Path, PurePosixPath
from typing import Any, TypeVar, Unpack
from urllib.parse import quote, urlsplit

import httpx
from httpx_sse import SSEError
from pydantic import BaseModel, ValidationError

from retouch.client import errors, models
from retouch.client.config import ClientConfig
from retouch.client.effects import (
    Close,
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
from retouch.contract import idempotency
from retouch.contract.errors import INVALID_INPUT, NOT_FOUND
from retouch.contract.inputs import DEFAULT_ENDPOINT

M = TypeVar("M", bound=BaseModel)

USER_AGENT = "retouch-python"
# Answers worth retrying for a request that is safe to repeat: the server (or a proxy in
# front of it) could not take it now, and nothing was done.
RETRY_STATUSES = frozenset({502, 503, 504})
# The least time a request made during a wait is given, even at the wait's deadline: the
# most a wait can outlast its timeout by, per request.
MIN_REQUEST_TIMEOUT = 0.5

# An image given to run(): an http(s) or data: URL is sent as it is; anything else is a local
# file, uploaded first.
ImageInput = str | PathLike[str]
OnSubmitted = Callable[[models.Submission], object]
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
    """Calls on_update once per change of a job's status, whichever way it was learned."""

    def __init__(self, callback: OnUpdate | None) -> None:
        self.callback = callback
        self.last: models.Status | None = None

    def seen(self, status: models.Status) -> Flow[None]:
        before, self.last = self.last, status
        if self.callback is None:
            return
        if before is None or _progress_key(before) != _progress_key(status):
            yield Notify(self.callback, status)


def _progress_key(status: models.Status) -> tuple[object, ...]:
    progress = status.progress
    return (status.status, status.queue_position, progress and (progress.step, progress.total))


def is_url(image: ImageInput) -> bool:
    return isinstance(image, str) and image.lower().startswith(("http://", "https://", "data:"))


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
        self, prompt: str, image_urls: Sequence[str], **options: Unpack[models.SubmitOptions]
    ) -> Flow[models.Submission]:
        """Submit a job and return its request id at once. `image_urls` are URLs (http(s) or
        data:); `run()` also takes local files. Retried after a connection error or a
        502/503/504 only with an `idempotency_key` (the server then answers a repeat with
        the original job instead of a second one). `webhook`: a URL the server notifies
        when the job ends."""
        endpoint = options.pop("endpoint", DEFAULT_ENDPOINT)
        idempotency_key = options.pop("idempotency_key", None)
        check_idempotency_key(idempotency_key)
        webhook = options.pop("webhook", None)
        body = {"prompt": prompt, "image_urls": list(image_urls), **options}
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key is not None else None
        request = self.request(
            "POST",
            f"/v1/models/{endpoint.strip('/')}",
            json=body,
            params={"webhook": webhook} if webhook else None,
            headers=headers,
        )
        response = yield from self.send(request, retry=idempotency_key is not None)
        return parse(response, models.Submission)

    def status(self, request_id: str) -> Flow[models.Status]:
        """The job's status: in_queue (queue_position), in_progress (progress), completed or
        cancelled."""
        return (yield from self._get(self._path(request_id, "status"), models.Status))

    def result(self, request_id: str) -> Flow[models.Result]:
        """The job's result as it is now (finished or not); never raises for a failed job."""
        return (yield from self._get(self._path(request_id, "result"), models.Result))

    def cancel(self, request_id: str) -> Flow[models.CancelOutcome]:
        """Cancel a queued job (`cancelled` says whether it is, now or already); repeating it
        is harmless, so it is retried like a read."""
        request = self.request("POST", self._path(request_id, "cancel"))
        response = yield from self.send(request, retry=True)
        return parse(response, models.CancelOutcome)

    def upload(
        self,
        file: ImageInput | bytes,
        *,
        filename: str | None = None,
        content_type: str | None = None,
    ) -> Flow[models.Upload]:
        """Upload an image (a path, or its bytes); its `url` can go in `image_urls`.
        Retried like a read: a repeated upload only stores the file twice."""
        if isinstance(file, bytes):
            data, name = file, filename or "upload"
        else:
            path = Path(file)
            data = yield ReadFile(path)
            name = filename or path.name
        kind = content_type or mimetypes.guess_type(name)[0] or "application/octet-stream"
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
    ) -> Flow[models.Result]:
        """Wait for the job to finish and return its result; raises JobFailed, JobCancelled,
        or WaitTimeout after `timeout` seconds (the job goes on: call wait again). Follows
        the server's event stream; polls the status when there is none or it drops.
        `on_update(status)` is called on every change (queue position, steps)."""
        deadline = Deadline(timeout)
        updates = _Updates(on_update)
        result = None
        try:
            if self.use_stream:
                result = yield from self._follow_stream(request_id, deadline, updates)
            if result is None:
                yield from self._poll(request_id, deadline, updates)
                path = self._path(request_id, "result")
                result = yield from self._get(path, models.Result, deadline=deadline)
        except PastDeadline:
            raise errors.WaitTimeout(request_id, deadline.timeout, updates.last) from None
        return settle(result)

    def run(
        self,
        prompt: str,
        image_urls: Sequence[ImageInput],
        *,
        timeout: float | None = None,
        on_submitted: OnSubmitted | None = None,
        on_update: OnUpdate | None = None,
        on_upload: OnUpload | None = None,
        **options: Unpack[models.SubmitOptions],
    ) -> Flow[models.Result]:
        """Edit: upload the local files among `image_urls`, submit (`options` as `submit`
        takes them), wait, return the result.

        The submit carries an idempotency key (a new one unless given), so it is retried
        safely. `on_submitted(submission)` is called before waiting starts: keep its
        request id, and after a WaitTimeout (`timeout` seconds of waiting) resume with
        `wait(request_id)`. Raises JobFailed or JobCancelled as `wait` does."""
        # Checked before the uploads: a bad key fails at once.
        check_idempotency_key(options.get("idempotency_key") or None)
        urls = yield from self.prepare_images(image_urls, on_upload)
        options["idempotency_key"] = options.get("idempotency_key") or new_idempotency_key()
        submission = yield from self.submit(prompt, urls, **options)
        if on_submitted is not None:
            yield Notify(on_submitted, submission)
        return (yield from self.wait(submission.request_id, timeout=timeout, on_update=on_update))

    def prepare_images(
        self, images: Sequence[ImageInput], on_upload: OnUpload | None = None
    ) -> Flow[list[str]]:
        """URLs for `images`: URLs as they are, local files uploaded (all checked to exist
        before the first upload). `on_upload(upload)` is called after each upload."""
        missing = [str(image) for image in images if not is_url(image) and not _is_file(image)]
        if missing:
            raise FileNotFoundError(f"no such file: {', '.join(missing)}")
        urls = []
        for image in images:
            if is_url(image):
                urls.append(str(image))
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

    def _follow_stream(
        self, request_id: str, deadline: Deadline, updates: _Updates
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

    def _poll(self, request_id: str, deadline: Deadline, updates: _Updates) -> Flow[models.Status]:
        """Poll the status until the job has finished (or raise PastDeadline)."""
        interval = self.poll.initial
        while True:
            request = self.request("GET", self._path(request_id, "status"))
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


def _is_file(image: ImageInput) -> bool:
    return Path(image).is_file()
