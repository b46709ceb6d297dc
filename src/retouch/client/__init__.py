"""The Retouch Python SDK: `Client` (blocking) and `AsyncClient` (asyncio).

    from retouch.client import Client

    with Client() as client:  # RETOUCH_URL / RETOUCH_API_KEY, or the config file
        handle = client.submit("google/nano-banana-2/edit", input={
            "prompt": "make it snow", "image_urls": ["photo.jpg"], "resolution": "2K",
        })
        for event in handle.iter_events(with_logs=True):
            print(event)
        client.download(handle.result(), "out/")

Or on a default client: `retouch.client.run(endpoint, input={...})`. Imports only httpx,
httpx-sse, pydantic, the standard library and the (torch-free) contract constants, so it is
cheap to import anywhere."""

from retouch.client.clients import AsyncClient, Client
from retouch.client.config import ClientConfig, resolve_config
from retouch.client.core import PollPolicy, RetryPolicy
from retouch.client.errors import (
    APIConnectionError,
    AuthenticationError,
    BadRequestError,
    ConfigurationError,
    ConflictError,
    ConnectionError,
    InvalidApiKeyError,
    InvalidInputError,
    JobCancelled,
    JobFailed,
    MissingApiKeyError,
    NotFoundError,
    OverloadedError,
    PermissionDeniedError,
    RateLimitError,
    RetouchError,
    ServerError,
    WaitTimeout,
)
from retouch.client.events import Completed, Event, InProgress, Queued
from retouch.client.handles import AsyncRequestHandle, RequestHandle
from retouch.client.images import to_data_uri
from retouch.client.models import (
    CancelOutcome,
    EditFields,
    Fetched,
    JobError,
    LogEntry,
    Output,
    Progress,
    RequestList,
    RequestSummary,
    Result,
    Status,
    Submission,
    SubmitOptions,
    Upload,
    WebhookSecret,
)
from retouch.client.shortcuts import (
    cancel,
    default_client,
    download,
    edit,
    get,
    reset_default_client,
    result,
    run,
    status,
    submit,
    upload,
    wait,
)
from retouch.contract.inputs import DEFAULT_ENDPOINT

__all__ = [
    "DEFAULT_ENDPOINT",
    "APIConnectionError",
    "AsyncClient",
    "AsyncRequestHandle",
    "AuthenticationError",
    "BadRequestError",
    "CancelOutcome",
    "Client",
    "ClientConfig",
    "Completed",
    "ConfigurationError",
    "ConflictError",
    "ConnectionError",
    "EditFields",
    "Event",
    "Fetched",
    "InProgress",
    "InvalidApiKeyError",
    "InvalidInputError",
    "JobCancelled",
    "JobError",
    "JobFailed",
    "LogEntry",
    "MissingApiKeyError",
    "NotFoundError",
    "Output",
    "OverloadedError",
    "PermissionDeniedError",
    "PollPolicy",
    "Progress",
    "Queued",
    "RateLimitError",
    "RequestHandle",
    "RequestList",
    "RequestSummary",
    "Result",
    "RetouchError",
    "RetryPolicy",
    "ServerError",
    "Status",
    "Submission",
    "SubmitOptions",
    "Upload",
    "WaitTimeout",
    "WebhookSecret",
    "cancel",
    "default_client",
    "download",
    "edit",
    "get",
    "reset_default_client",
    "resolve_config",
    "result",
    "run",
    "status",
    "submit",
    "to_data_uri",
    "upload",
    "wait",
]
