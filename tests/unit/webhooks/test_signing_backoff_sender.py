"""The retry schedule, Retry-After, the signatures and the per-key secrets."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from email.utils import format_datetime

import pytest
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from retouch.auth.keys import KeyStore
from retouch.auth.keys import new_webhook_secret as new_secret
from retouch.config import Settings
from retouch.jobs.open_store import open_store
from retouch.webhooks.backoff import RetrySchedule, retry_after
from retouch.webhooks.dispatcher import schedule_from
from retouch.webhooks.signing import message_id, signed_headers


def test_default_schedule_grows_to_the_cap() -> None:
    schedule = schedule_from(Settings.model_validate({}))
    pauses = [schedule.delay(n, draw=lambda: 0.0) for n in range(1, 8)]
    assert pauses == [5, 30, 180, 1080, 6480, 7200, 7200]
    # Jitter only shortens a pause, by at most a fifth.
    assert schedule.delay(1, draw=lambda: 1.0) == pytest.approx(4.0)
    assert schedule.delay(7, draw=lambda: 0.5) == pytest.approx(7200 * 0.9)


def test_default_schedule_fits_a_day() -> None:
    schedule = schedule_from(Settings.model_validate({}))
    elapsed, tries = 0.0, 1
    while elapsed + (pause := schedule.delay(tries, draw=lambda: 0.0)) <= 24 * 3600:
        elapsed += pause
        tries += 1
    # From seconds to hours apart: a short outage is bridged at once, a long one in ~2 h steps.
    assert tries == 16


def test_schedule_never_overflows() -> None:
    schedule = RetrySchedule(first=5, factor=6, maximum=3600)
    assert schedule.delay(100_000, draw=lambda: 0.0) == 3600
    assert RetrySchedule(first=10, factor=2, maximum=3).delay(1, draw=lambda: 0.0) == 3


def test_retry_after() -> None:
    assert retry_after({"retry-after": "120"}) == 120
    later = datetime.fromtimestamp(1_000_060, UTC)
    assert retry_after({"retry-after": format_datetime(later, usegmt=True)}, now=1_000_000) == 60
    assert retry_after({"retry-after": "soon"}) is None
    assert retry_after({}) is None


def test_secret_format() -> None:
    secret = new_secret()
    assert secret.startswith("whsec_")
    assert len(base64.b64decode(secret.removeprefix("whsec_"))) == 32
    assert new_secret() != secret


def test_signed_headers_verify_with_the_library() -> None:
    secret = new_secret()
    body = '{"request_id":"abc","status":"succeeded"}'
    now = datetime.now(UTC).timestamp()
    headers = signed_headers(secret, message_id("abc"), body, now)
    assert headers["webhook-id"] == "msg_abc"
    assert headers["webhook-timestamp"] == str(int(now))
    assert Webhook(secret).verify(body.encode(), headers) == {
        "request_id": "abc",
        "status": "succeeded",
    }
    with pytest.raises(WebhookVerificationError):
        Webhook(new_secret()).verify(body.encode(), headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(body.replace("abc", "abd").encode(), headers)


@pytest.fixture
def keys(database_url: str) -> Iterator[KeyStore]:
    """On each backend: the first-use race is settled by SQLite's write lock, and by the row
    lock of the UPDATE … WHERE webhook_secret IS NULL on PostgreSQL."""
    store = open_store(database_url, max_attempts=3, webhook_retry_seconds=60.0)
    yield KeyStore(store.engine)
    store.close()


def test_secret_per_key_made_once_and_rotated(keys: KeyStore) -> None:
    first, _ = keys.create("one")
    second, _ = keys.create("two")
    secret = keys.webhook_secret(first.id)
    assert secret.startswith("whsec_")
    assert keys.webhook_secret(first.id) == secret
    assert keys.webhook_secret(second.id) != secret
    rotated = keys.rotate_webhook_secret(first.id)
    assert rotated != secret and rotated.startswith("whsec_")
    assert keys.webhook_secret(first.id) == rotated
    with pytest.raises(KeyError):
        keys.webhook_secret("nosuchkey")
    with pytest.raises(KeyError):
        keys.rotate_webhook_secret("nosuchkey")


def test_first_use_from_many_threads_agrees(keys: KeyStore) -> None:
    record, _ = keys.create("busy")
    with ThreadPoolExecutor(8) as pool:
        secrets = set(pool.map(lambda _: keys.webhook_secret(record.id), range(16)))
    assert len(secrets) == 1
