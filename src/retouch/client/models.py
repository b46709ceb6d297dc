"""Typed answers of the API: the contract's own body models (retouch.contract.bodies), one
definition for the server that builds them and the SDK that parses them. Every model allows
extra fields, so fields a newer server adds reach the caller (as attributes) instead of
breaking the client. Plus what the SDK takes: the optional input fields of a submit."""

from __future__ import annotations

from typing import TypedDict

from retouch.contract.bodies import (
    CancelOutcome,
    JobError,
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

__all__ = [
    "FINISHED_RESULTS",
    "FINISHED_STATUSES",
    "CancelOutcome",
    "EditFields",
    "JobError",
    "Output",
    "Progress",
    "RequestList",
    "RequestSummary",
    "Result",
    "Status",
    "Submission",
    "SubmitOptions",
    "Upload",
    "WebhookSecret",
]


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


class SubmitOptions(EditFields, total=False):
    """What a submit takes besides the prompt and the images."""

    endpoint: str  # default: google/nano-banana-2/edit
    idempotency_key: str | None
    webhook: str | None
