"""Standard Webhooks signatures: the three headers of each attempt (each key's `whsec_` secret
is made in retouch.auth.keys)."""

from __future__ import annotations

from datetime import UTC, datetime

from standardwebhooks import Webhook


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
