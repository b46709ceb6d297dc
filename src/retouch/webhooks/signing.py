"""Standard Webhooks signatures: `whsec_` secrets, and the three headers of each attempt."""

from __future__ import annotations

import base64
import secrets
from datetime import UTC, datetime
from typing import Final

from standardwebhooks import Webhook

SECRET_PREFIX: Final = "whsec_"
# The specification asks for 24 to 64 random bytes.
SECRET_BYTES: Final = 32


def new_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode("ascii")


def message_id(job_id: str) -> str:
    """The webhook-id of a job's delivery: the same on every retry, so a receiver can tell a
    retry from a new event and ignore what it already handled."""
    return f"msg_{job_id}"


def signed_headers(secret: str, msg_id: str, body: str, at: float) -> dict[str, str]:
    """webhook-id, webhook-timestamp (whole seconds, as signed) and webhook-signature."""
    timestamp = int(at)
    moment = datetime.fromtimestamp(timestamp, UTC)
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": Webhook(secret).sign(msg_id, moment, body),
    }
