"""The Retouch Python SDK: `Client` (blocking) and `AsyncClient` (asyncio).

    from retouch.client import Client

    with Client() as client:  # RETOUCH_URL / RETOUCH_API_KEY, or the config file
        result = client.run("make it snow", ["photo.jpg"], resolution="2K")
        client.download(result, "out/")

Imports only httpx, httpx-sse, pydantic, the standard library and the (torch-free) contract
constants, so it is cheap to import anywhere."""

from retouch.client.clients import AsyncClient, Client
from retouch.client.config import ClientConfig, resolve_config
from retouch.client.core import PollPolicy, RetryPolicy
from retouch.client.errors import (
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
from retouch.client.models import (
    CancelOutcome,
    EditFields,
    JobError,
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

__all__ = [
    "AsyncClient",
    "AuthenticationError",
    "BadRequestError",
    "CancelOutcome",
    "Client",
    "ClientConfig",
    "ConfigurationError",
    "ConflictError",
    "ConnectionError",
    "EditFields",
    "InvalidApiKeyError",
    "InvalidInputError",
    "JobCancelled",
    "JobError",
    "JobFailed",
    "MissingApiKeyError",
    "NotFoundError",
    "Output",
    "OverloadedError",
    "PermissionDeniedError",
    "PollPolicy",
    "Progress",
    "RateLimitError",
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
    "resolve_config",
]
