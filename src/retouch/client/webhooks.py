"""Checking a Retouch webhook in the receiver: the signature, then the body as a `Result`.

Retouch signs each webhook attempt the Standard Webhooks way (https://www.standardwebhooks.com):
three headers, `webhook-id` (`msg_<request id>`, the same on every retry, so a receiver can
ignore what it already handled), `webhook-timestamp` (Unix seconds) and `webhook-signature`
(`v1,<base64 HMAC-SHA256 of "<id>.<timestamp>.<body>">`), keyed with the API key's webhook
secret (`whsec_…`, from `Client.webhook_secret()`). The body is the request's result, the
same JSON as `GET /v1/requests/{id}/result`.

    from retouch.client.webhooks import WebhookVerificationError, verify

    @app.post("/retouch")
    async def hook(request: Request) -> Response:
        try:
            result = verify(request.headers, await request.body(), SECRET)
        except WebhookVerificationError:
            return Response(status_code=400)
        ...

Pass the body exactly as received (bytes, or the text it decodes to): the signature covers
those bytes, so JSON parsed and dumped again no longer verifies."""

from __future__ import annotations

import base64
import binascii
import hmac
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Final

from pydantic import ValidationError

from retouch.client.errors import RetouchError
from retouch.client.models import Result

ID_HEADER: Final = "webhook-id"
TIMESTAMP_HEADER: Final = "webhook-timestamp"
SIGNATURE_HEADER: Final = "webhook-signature"

DEFAULT_TOLERANCE: Final = 300.0
"""Seconds a webhook's timestamp may be from the receiver's clock, either way: 5 minutes, the
`standardwebhooks` library's own (fixed) tolerance. A replayed old delivery is refused; so is
a genuine one held up longer than this before it reached `verify`."""


class WebhookVerificationError(RetouchError):
    """A webhook that is not from Retouch, or not as Retouch sent it: a header missing, a bad
    or expired signature, or a body that is not a result. Answer it with a 4xx (Retouch retries
    a delivery that fails; a forger gets nothing)."""

    def __init__(self, message: str) -> None:
        super().__init__(None, "webhook_signature", message)


def verify(
    headers: Mapping[str, str],
    body: bytes | str,
    secret: str,
    *,
    tolerance: float = DEFAULT_TOLERANCE,
) -> Result:
    """The result a Retouch webhook carries, once its Standard Webhooks signature checks out.

    `headers` is any mapping of the request's headers (a dict, Starlette's or Flask's headers):
    names are matched without regard to case. `body` is the raw request body. `secret` is the
    key's webhook secret (`whsec_…`). `tolerance` is how many seconds the signed timestamp may
    be from now, either way (default 5 minutes, as the `standardwebhooks` library).

    Raises WebhookVerificationError, saying which check failed; ValueError for a secret that is
    not a webhook secret at all (a configuration mistake, not a bad request)."""
    # Imported here: only receivers need the library, and nothing else in the SDK uses it.
    from standardwebhooks import Webhook

    found = _headers(headers)
    msg_id, timestamp, signatures = (found[name] for name in _REQUIRED)
    moment = _check_timestamp(timestamp, tolerance)
    if isinstance(body, str):
        text = body
    else:
        try:
            text = bytes(body).decode("utf-8")
        except UnicodeDecodeError:
            raise WebhookVerificationError("webhook body is not UTF-8 text") from None
    try:
        signer = Webhook(secret)
    except Exception as error:  # binascii.Error, EmptyWebhookSecretError
        raise ValueError(
            "secret is not a Standard Webhooks secret (whsec_ and base64, as "
            f"Client.webhook_secret() returns): {error}"
        ) from None
    expected = _signature_bytes(signer.sign(msg_id, moment, text).partition(",")[2])
    if not any(
        version == "v1" and hmac.compare_digest(expected, _signature_bytes(encoded))
        for version, _, encoded in (part.partition(",") for part in signatures.split())
    ):
        raise WebhookVerificationError(
            "webhook signature does not match: the body was changed, or it was signed with "
            "another secret (another API key's, or one since rotated)"
        )
    try:
        return Result.model_validate_json(text)
    except ValidationError as error:
        problems = "; ".join(
            f"{'.'.join(map(str, detail['loc'])) or 'body'}: {detail['msg']}"
            for detail in error.errors()[:3]
        )
        raise WebhookVerificationError(
            f"webhook body is signed but is not a Retouch result ({problems})"
        ) from None


_REQUIRED: Final = (ID_HEADER, TIMESTAMP_HEADER, SIGNATURE_HEADER)


def _headers(headers: Mapping[str, str]) -> dict[str, str]:
    """The three Standard Webhooks headers, found whatever their case."""
    wanted = {name: "" for name in _REQUIRED}
    for name, value in headers.items():
        key = name.lower()
        if key in wanted and not wanted[key]:
            wanted[key] = value.strip()
    missing = [name for name, value in wanted.items() if not value]
    if missing:
        raise WebhookVerificationError(
            f"webhook is missing the {', '.join(missing)} header"
            + ("s" if len(missing) > 1 else "")
            + ": not a signed Retouch webhook"
        )
    return wanted


def _check_timestamp(value: str, tolerance: float) -> datetime:
    try:
        seconds = int(value)
    except ValueError:
        raise WebhookVerificationError(
            f"{TIMESTAMP_HEADER} is not whole Unix seconds: {value[:40]!r}"
        ) from None
    skew = time.time() - seconds
    if skew > tolerance:
        raise WebhookVerificationError(
            f"webhook timestamp is too old ({skew:.0f} s ago, more than {tolerance:g} s): "
            "a replay, or a delivery held up on the way"
        )
    if -skew > tolerance:
        raise WebhookVerificationError(
            f"webhook timestamp is too new ({-skew:.0f} s ahead, more than {tolerance:g} s): "
            "check this machine's clock"
        )
    return datetime.fromtimestamp(seconds, UTC)


def _signature_bytes(encoded: str) -> bytes:
    try:
        return base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        return b""  # never equal to a real HMAC
