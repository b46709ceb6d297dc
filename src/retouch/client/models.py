"""Typed answers of the API: the contract's own body models (retouch.contract.bodies), one
definition for the server that builds them and the SDK that parses them. Every model allows
extra fields, so fields a newer server adds reach the caller (as attributes) instead of
breaking the client. Plus what the SDK takes: the optional input fields of a submit."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from os import PathLike
from typing import TYPE_CHECKING, Generic, TypeAlias, TypedDict, TypeVar

from pydantic import BaseModel

from retouch.contract.bodies import (
    CancelOutcome,
    JobError,
    LogEntry,
    Output,
    Progress,
    RequestList,
    RequestSummary,
    Result,
    Status,
    Submission,
    Upload,
    WebhookSecret,
)
from retouch.contract.states import FINISHED_RESULTS, FINISHED_STATUSES

if TYPE_CHECKING:
    from PIL.Image import Image

__all__ = [
    "FINISHED_RESULTS",
    "FINISHED_STATUSES",
    "CancelOutcome",
    "EditFields",
    "EditOptions",
    "Fetched",
    "ImageInput",
    "InputFields",
    "JobError",
    "LogEntry",
    "Output",
    "Progress",
    "RequestList",
    "RequestSummary",
    "Result",
    "RunOptions",
    "Status",
    "Submission",
    "SubmitOptions",
    "Upload",
    "WebhookSecret",
]


M = TypeVar("M", bound=BaseModel)


@dataclass(frozen=True)
class Fetched(Generic[M]):
    """An answer parsed (`value`) and the server's body byte for byte (`body`)."""

    value: M
    body: bytes


class EditFields(TypedDict, total=False):
    """The optional input fields of the nano-banana-2/edit contract (the server checks them)."""

    num_images: int
    seed: int
    aspect_ratio: str
    resolution: str
    output_format: str
    safety_tolerance: int
    limit_generations: bool
    enable_web_search: bool


# An image in `image_urls`: an http(s) or data: URL is sent as it is; a local path, bytes or a
# PIL image is uploaded first (POST /v1/files) and its URL sent instead.
ImageInput: TypeAlias = "str | PathLike[str] | bytes | Image"


class InputFields(EditFields, total=False):
    """Every input field of the contract, as keyword arguments of `run()` and `submit()`."""

    prompt: str
    image_urls: Sequence[ImageInput]


class SubmitControl(TypedDict, total=False):
    """How a submit is sent (not input fields)."""

    idempotency_key: str | None  # retries are safe with one; run() makes one unless given
    webhook: str | None  # a URL the server notifies when the job ends
    on_upload: Callable[[Upload], object] | None  # after each upload of a local image


class RunControl(SubmitControl, total=False):
    """How `run()` and `edit()` wait (not input fields)."""

    timeout: float | None  # seconds of waiting, then WaitTimeout
    cancel_on_timeout: bool  # cancel the request before raising WaitTimeout
    with_logs: bool  # fill result.logs
    on_submitted: Callable[[Submission], object] | None  # before waiting starts
    on_update: Callable[[Status], object] | None  # each status change


class SubmitOptions(SubmitControl, InputFields, total=False):
    """What `submit()` takes as keyword arguments."""


class RunOptions(RunControl, InputFields, total=False):
    """What `run()` takes as keyword arguments."""


class EditOptions(RunControl, EditFields, total=False):
    """What `edit()` takes as keyword arguments, besides the prompt, images and endpoint."""
