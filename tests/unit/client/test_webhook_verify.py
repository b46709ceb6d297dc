"""The SDK's webhook check (retouch.client.webhooks.verify) against bodies signed by the
server's own signing code: headers in any case, and each way a webhook can be refused."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime

import pytest

from retouch.auth.keys import new_webhook_secret
from retouch.client import Result
from retouch.client.errors import RetouchError
from retouch.client.webhooks import DEFAULT_TOLERANCE, WebhookVerificationError, verify
from retouch.contract.bodies import JobError, Output
from retouch.webhooks.signing import message_id, signed_headers

SECRET = new_webhook_secret()


def result_body() -> str:
    """A succeeded result as the dispatcher sends it (Result.to_json)."""
    result = Result(
        request_id="req_0123",
        status="succeeded",
        output=Output(images=["https://retouch.example/v1/files/out.png?sig=abc"]),
        created_at=datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC),
        attempts=1,
    )
    return result.to_json().decode()


def signed(body: str, *, secret: str = SECRET, at: float | None = None) -> dict[str, str]:
    return signed_headers(secret, message_id("req_0123"), body, time.time() if at is None else at)


def refused(headers: Mapping[str, str], body: bytes | str, secret: str = SECRET) -> str:
    with pytest.raises(WebhookVerificationError) as caught:
        verify(headers, body, secret)
    error = caught.value
    assert isinstance(error, RetouchError)
    assert (error.status_code, error.error_code) == (None, "webhook_signature")
    return error.message


@pytest.mark.parametrize("case", ["lower", "upper", "title", "mixed"])
def test_verify_matches_header_names_in_any_case(case: str) -> None:
    body = result_body()
    rename: Callable[[str], str] = {
        "lower": str.lower,
        "upper": str.upper,
        "title": lambda name: name.title(),  # Webhook-Id, as WSGI frameworks give them
        "mixed": lambda name: "".join(c.upper() if i % 2 else c for i, c in enumerate(name)),
    }[case]
    headers = {rename(name): value for name, value in signed(body).items()}
    headers["Content-Type"] = "application/json"
    result = verify(headers, body.encode(), SECRET)
    assert isinstance(result, Result)
    assert (result.request_id, result.status, result.ok) == ("req_0123", "succeeded", True)
    assert result.images == ["https://retouch.example/v1/files/out.png?sig=abc"]
    assert verify(headers, body, SECRET) == result  # the body as text too


def test_verify_takes_a_starlette_headers_object() -> None:
    from starlette.datastructures import Headers

    body = result_body()
    raw = [(name.title().encode(), value.encode()) for name, value in signed(body).items()]
    assert verify(Headers(raw=raw), body.encode(), SECRET).request_id == "req_0123"


def test_a_failed_result_verifies_too() -> None:
    body = Result(
        request_id="req_0123",
        status="failed",
        error=JobError(code="content_policy_violation", message="withheld"),
    ).to_json()
    result = verify(signed(body.decode()), body, SECRET)
    assert result.error is not None and result.error.code == "content_policy_violation"


def test_a_tampered_body_is_refused() -> None:
    body = result_body()
    headers = signed(body)
    message = refused(headers, body.replace("req_0123", "req_9999"))
    assert "signature does not match" in message and "body was changed" in message
    # Even a change JSON would not see (whitespace): the signature covers the bytes.
    assert "signature does not match" in refused(headers, body + " ")


def test_a_wrong_secret_is_refused() -> None:
    body = result_body()
    message = refused(signed(body, secret=new_webhook_secret()), body)
    assert "signature does not match" in message and "another secret" in message


def test_a_garbled_signature_is_refused() -> None:
    body = result_body()
    for signature in ("v1,not base64!", "garbage", "v2," + signed(body)["webhook-signature"][3:]):
        headers = {**signed(body), "webhook-signature": signature}
        assert "signature does not match" in refused(headers, body)


def test_one_good_signature_among_several_passes() -> None:
    # Standard Webhooks sends one signature per secret while a secret is being rotated.
    body = result_body()
    old = signed(body, secret=new_webhook_secret())["webhook-signature"]
    headers = {**signed(body), "webhook-signature": f"{old} " + signed(body)["webhook-signature"]}
    assert verify(headers, body, SECRET).request_id == "req_0123"


@pytest.mark.parametrize("header", ["webhook-id", "webhook-timestamp", "webhook-signature"])
def test_a_missing_header_is_refused_by_name(header: str) -> None:
    body = result_body()
    headers = {name: value for name, value in signed(body).items() if name != header}
    assert f"missing the {header} header:" in refused(headers, body)
    # An empty header is as good as none.
    assert f"missing the {header} header:" in refused({**headers, header: ""}, body)


def test_no_headers_at_all_names_all_three() -> None:
    message = refused({"content-type": "application/json"}, result_body())
    assert "missing the webhook-id, webhook-timestamp, webhook-signature headers" in message


def test_an_old_timestamp_is_refused() -> None:
    body = result_body()
    headers = signed(body, at=time.time() - DEFAULT_TOLERANCE - 60)
    message = refused(headers, body)
    assert "timestamp is too old" in message and "300 s" in message
    # A wider tolerance takes it.
    assert verify(headers, body, SECRET, tolerance=3600).request_id == "req_0123"


def test_a_future_timestamp_is_refused() -> None:
    body = result_body()
    message = refused(signed(body, at=time.time() + DEFAULT_TOLERANCE + 60), body)
    assert "timestamp is too new" in message and "clock" in message


def test_a_timestamp_within_the_tolerance_passes() -> None:
    assert DEFAULT_TOLERANCE == 300  # the standardwebhooks library's own
    body = result_body()
    for skew in (-DEFAULT_TOLERANCE + 30, DEFAULT_TOLERANCE - 30):
        assert verify(signed(body, at=time.time() + skew), body, SECRET).ok


def test_a_malformed_timestamp_is_refused() -> None:
    body = result_body()
    headers = {**signed(body), "webhook-timestamp": "yesterday"}
    assert "webhook-timestamp is not whole Unix seconds: 'yesterday'" in refused(headers, body)


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ('{"hello": "world"}', "request_id: Field required"),
        ('{"request_id": "req_1", "status": "exploded"}', "status:"),
        ("[1, 2, 3]", "body:"),
        ("not json", "body: Invalid JSON"),
    ],
)
def test_a_signed_body_that_is_not_a_result_is_refused(body: str, reason: str) -> None:
    message = refused(signed(body), body)
    assert message.startswith("webhook body is signed but is not a Retouch result (")
    assert reason in message


def test_a_body_that_is_not_utf8_is_refused() -> None:
    body = result_body()
    assert "not UTF-8" in refused(signed(body), body.encode() + b"\xff")


@pytest.mark.parametrize("secret", ["", "whsec_", "whsec_!!!not*base64"])
def test_a_secret_that_is_not_a_webhook_secret_is_a_value_error(secret: str) -> None:
    body = result_body()
    with pytest.raises(ValueError, match="not a Standard Webhooks secret"):
        verify(signed(body), body, secret)
