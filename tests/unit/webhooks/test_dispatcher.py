"""The dispatcher in-process against a real store and a receiver on 127.0.0.1: signatures,
retries, 410, redirects, refused addresses, timeouts, giving up, rotation, shutdown."""

from __future__ import annotations

import asyncio
import re
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from standardwebhooks import Webhook

import retouch.webhooks.dispatcher as dispatcher_module
from retouch.config import Settings
from retouch.contract.bodies import Result
from retouch.jobs.models import DeliveryRecord, StoredOutput, StoredResult
from retouch.responses import ResponseBuilder
from retouch.services import Services, open_services
from retouch.webhooks.dispatcher import INTERRUPTED, WebhookDispatcher
from webhook_receiver import Receiver, webhook_receiver

from ..databases import PostgresDatabases
from ..tcp_proxy import proxy_to, wait_until

BASE = "http://api.test"
FAST = {
    "fetch_allow": ("127.0.0.1",),
    "webhook_first_retry_seconds": 0.05,
    "webhook_retry_factor": 1.0,
    "webhook_timeout_seconds": 2.0,
}


@pytest.fixture(autouse=True)
def quick_polls(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dispatcher_module, "POLL_SECONDS", 0.02)


@dataclass
class Harness:
    settings: Settings
    services: Services
    key_id: str

    @property
    def secret(self) -> str:
        return self.services.keys.webhook_secret(self.key_id)

    def finished_job(self, url: str) -> str:
        """A succeeded job with one output that asked for a webhook at `url`."""
        store = self.services.store
        job = store.submit(
            key_id=self.key_id,
            endpoint="google/nano-banana-2/edit",
            input={"prompt": "p", "image_urls": ["data:,"]},
            max_queued=100,
            webhook_url=url,
            base_url=BASE,
        )
        claim = store.claim(worker_id="w", lease_seconds=30)
        assert claim is not None and claim.job.id == job.id
        output = StoredOutput(file=f"{job.id}/0.png", content_type="image/png", size=3, seed=0)
        assert store.complete(claim, result=StoredResult(outputs=[output]).as_json_dict())
        return job.id

    def delivery(self, job_id: str) -> DeliveryRecord:
        record = self.services.store.delivery(job_id)
        assert record is not None
        return record

    def wait_for(
        self, job_id: str, predicate: Callable[[DeliveryRecord], bool], timeout: float = 20
    ) -> DeliveryRecord:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            record = self.delivery(job_id)
            if predicate(record):
                return record
            time.sleep(0.01)
        raise AssertionError(f"delivery of {job_id} never got there: {self.delivery(job_id)}")

    @contextmanager
    def dispatching(self, grace: float = 3.0) -> Iterator[WebhookDispatcher]:
        """The dispatcher running on its own event loop in a thread, stopped on exit."""
        responses = ResponseBuilder(self.services.signer, self.settings.url_ttl_seconds)
        dispatcher = WebhookDispatcher(
            store=self.services.store,
            keys=self.services.keys,
            responses=responses,
            settings=self.settings,
        )
        ready = threading.Event()
        loop_box: list[asyncio.AbstractEventLoop] = []
        stop_box: list[asyncio.Event] = []

        async def main() -> None:
            stop = asyncio.Event()
            loop_box.append(asyncio.get_running_loop())
            stop_box.append(stop)
            dispatcher.start()
            ready.set()
            await stop.wait()
            await dispatcher.stop(grace)

        thread = threading.Thread(target=asyncio.run, args=(main(),))
        thread.start()
        ready.wait(5)
        try:
            yield dispatcher
        finally:
            loop_box[0].call_soon_threadsafe(stop_box[0].set)
            thread.join(15)
            assert not thread.is_alive()


@contextmanager
def harness(tmp_path: Path, **overrides: Any) -> Iterator[Harness]:
    settings = Settings.model_validate({"data_dir": tmp_path / "data", **FAST, **overrides})
    services = open_services(settings)
    record, _ = services.keys.create("test")
    try:
        yield Harness(settings, services, record.id)
    finally:
        services.close()


@pytest.fixture
def app(tmp_path: Path) -> Iterator[Harness]:
    with harness(tmp_path) as opened:
        yield opened


@pytest.fixture
def receiver(app: Harness) -> Iterator[Receiver]:
    with webhook_receiver(app.secret) as opened:
        yield opened


def codes(record: DeliveryRecord) -> list[int | None]:
    return [attempt.status_code for attempt in record.attempts]


def test_delivers_the_signed_result(app: Harness, receiver: Receiver) -> None:
    job_id = app.finished_job(receiver.url)
    with app.dispatching():
        record = app.wait_for(job_id, lambda r: r.state == "delivered")
    assert codes(record) == [200] and record.attempts[0].error is None
    assert record.finished_at is not None and record.next_attempt_at is None
    assert app.services.store.next_delivery_at() is None
    [received] = receiver.received
    body = received.verified
    assert body is not None, "signature did not verify"
    assert body["request_id"] == job_id and body["status"] == "succeeded"
    assert body["output"]["image"].startswith(f"{BASE}/v1/files/{job_id}/0.png?expires=")
    assert "webhook" not in body  # the plain result body
    assert received.headers["webhook-id"] == f"msg_{job_id}"
    assert received.headers["content-type"] == "application/json"
    assert received.headers["user-agent"].startswith("Retouch/")
    assert abs(int(received.headers["webhook-timestamp"]) - time.time()) < 10


def test_failed_attempts_are_retried_with_the_same_id(app: Harness, receiver: Receiver) -> None:
    receiver.answers[:] = [500, 503]
    job_id = app.finished_job(receiver.url)
    with app.dispatching():
        record = app.wait_for(job_id, lambda r: r.state == "delivered")
    assert codes(record) == [500, 503, 200]
    assert [a.error for a in record.attempts] == ["HTTP 500", "HTTP 503", None]
    assert [r.status for r in receiver.received] == [500, 503, 200]
    assert {r.headers["webhook-id"] for r in receiver.received} == {f"msg_{job_id}"}
    assert all(r.verified is not None for r in receiver.received)


def test_gone_stops_the_retries(app: Harness, receiver: Receiver) -> None:
    receiver.answers[:] = [410, 500]
    job_id = app.finished_job(receiver.url)
    with app.dispatching():
        record = app.wait_for(job_id, lambda r: r.state == "failed")
        # Another delivery goes through afterwards: the 410 one was not tried again meanwhile.
        later = app.finished_job(receiver.url)
        app.wait_for(later, lambda r: r.state != "pending")
    assert codes(record) == [410]
    assert record.attempts[0].error == "HTTP 410 Gone: the receiver asked for no more attempts"
    assert codes(app.delivery(job_id)) == [410]


def test_redirect_is_a_failed_attempt(app: Harness, receiver: Receiver) -> None:
    receiver.answers[:] = [302]
    job_id = app.finished_job(receiver.url)
    with app.dispatching():
        record = app.wait_for(job_id, lambda r: r.state == "delivered")
    assert codes(record) == [302, 200]
    assert record.attempts[0].error == (
        f"HTTP 302 redirect to {receiver.base}/elsewhere not followed: "
        "give the final URL as the webhook"
    )
    assert [r.path for r in receiver.received] == ["/hook", "/hook"]


def test_refused_addresses_never_connect(tmp_path: Path) -> None:
    with harness(tmp_path, fetch_allow=()) as app, webhook_receiver(app.secret) as receiver:
        port = receiver.base.rsplit(":", 1)[1]
        by_name = app.finished_job(f"http://localhost:{port}/hook")
        private = app.finished_job("http://10.0.0.1/hook")
        with app.dispatching():
            named = app.wait_for(by_name, lambda r: len(r.attempts) >= 2)
            literal = app.wait_for(private, lambda r: len(r.attempts) >= 2)
    assert named.state == "pending" and codes(named)[:2] == [None, None]
    error = named.attempts[0].error or ""
    assert re.match(r"refused address (127\.0\.0\.1|::1) \(loopback\) for host localhost", error)
    assert "RETOUCH_FETCH_ALLOW" in error
    assert (literal.attempts[0].error or "").startswith(
        "refused address 10.0.0.1 (private network) for host 10.0.0.1"
    )
    assert receiver.connections == 0


def test_timeout_is_a_failed_attempt(tmp_path: Path) -> None:
    with (
        harness(tmp_path, webhook_timeout_seconds=0.3) as app,
        webhook_receiver(app.secret) as receiver,
    ):
        receiver.delay = 1.0
        job_id = app.finished_job(receiver.url)
        with app.dispatching():
            record = app.wait_for(job_id, lambda r: len(r.attempts) >= 1)
            receiver.delay = 0.0
            record = app.wait_for(job_id, lambda r: r.state == "delivered")
    assert record.attempts[0].error == "timed out after 0.3 s"
    assert record.attempts[0].status_code is None
    assert 250 < record.attempts[0].duration_ms < 2000


def test_gives_up_after_the_retry_period(tmp_path: Path) -> None:
    with harness(tmp_path, webhook_retry_seconds=0.3) as app, webhook_receiver() as receiver:
        receiver.answers[:] = [500] * 1000
        job_id = app.finished_job(receiver.url)
        with app.dispatching():
            record = app.wait_for(job_id, lambda r: r.state == "failed")
    assert len(record.attempts) >= 2 and set(codes(record)) == {500}
    assert record.finished_at is not None and record.next_attempt_at is None
    assert app.services.store.next_delivery_at() is None


def test_rotated_secret_signs_the_next_attempt(app: Harness, receiver: Receiver) -> None:
    old = receiver.secret
    receiver.answers[:] = [500]
    job_id = app.finished_job(receiver.url)
    with app.dispatching():
        receiver.wait_for(lambda got: len(got) == 1)
        new = app.services.keys.rotate_webhook_secret(app.key_id)
        receiver.secret = new
        app.wait_for(job_id, lambda r: r.state == "delivered")
    first, last = receiver.received
    assert first.verified is not None  # signed with the old secret
    assert last.verified is not None  # signed with the new one
    assert old is not None
    assert Webhook(old).verify(first.body, first.headers) is not None
    with pytest.raises(Exception, match="signature"):
        Webhook(old).verify(last.body, last.headers)


def test_an_exception_is_recorded_and_others_go_on(
    app: Harness, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    broken = app.finished_job(receiver.url)
    healthy = app.finished_job(receiver.url)
    original = ResponseBuilder.result

    def result(self: ResponseBuilder, base: str, job: Any) -> Result:
        if job.id == broken:
            raise RuntimeError("boom")
        return original(self, base, job)

    monkeypatch.setattr(ResponseBuilder, "result", result)
    with app.dispatching():
        app.wait_for(healthy, lambda r: r.state == "delivered")
        record = app.wait_for(broken, lambda r: len(r.attempts) >= 2)
    assert record.state == "pending"
    assert record.attempts[0].error == "internal error while sending (RuntimeError)"


def test_sends_concurrently_within_the_bound(tmp_path: Path) -> None:
    with (
        harness(tmp_path, webhook_concurrency=2) as app,
        webhook_receiver(app.secret) as receiver,
    ):
        receiver.delay = 0.5
        jobs = [app.finished_job(receiver.url) for _ in range(5)]
        with app.dispatching():
            for job_id in jobs:
                app.wait_for(job_id, lambda r: r.state == "delivered")
    assert receiver.most_at_once == 2


def test_stop_records_an_interrupted_attempt(app: Harness, receiver: Receiver) -> None:
    receiver.delay = 5.0
    job_id = app.finished_job(receiver.url)
    started = time.monotonic()
    with app.dispatching(grace=0.1):
        deadline = time.monotonic() + 10
        while receiver.connections == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
    assert time.monotonic() - started < 3  # stopping did not wait for the receiver
    record = app.delivery(job_id)
    assert record.state == "pending" and record.attempts[0].error == INTERRUPTED
    # Due again at once, and no longer leased: the next start sends it without waiting.
    assert record.next_attempt_at is not None and record.next_attempt_at <= time.time()
    claimed = app.services.store.claim_deliveries(limit=5, lease_seconds=10)
    assert [d.job_id for d in claimed] == [job_id]


def test_no_write_transactions_when_idle_or_waiting(
    app: Harness, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = app.services.store
    claims: list[int] = []
    original = store.claim_deliveries

    def counted(*, limit: int, lease_seconds: float) -> list[Any]:
        claimed = original(limit=limit, lease_seconds=lease_seconds)
        claims.append(len(claimed))
        return claimed

    monkeypatch.setattr(store, "claim_deliveries", counted)
    receiver.delay = 1.0
    with app.dispatching():
        time.sleep(0.3)  # nothing due: reads only
        assert claims == []
        app.finished_job(receiver.url)
        receiver.wait_for(lambda got: len(got) == 1)
    # One claim took it; while it was in flight (due, but leased) no claim every poll.
    assert claims[0] == 1 and len(claims) <= 3


def test_an_outage_is_ridden_out_and_the_attempt_recorded_once(
    tmp_path: Path, postgres: PostgresDatabases, monkeypatch: pytest.MonkeyPatch
) -> None:
    """PostgreSQL goes away as the attempt is recorded: the dispatcher keeps the outcome and
    records it once the database answers (no second send), and its loop carries on."""
    direct = postgres.create()
    with (
        proxy_to(direct) as proxy,
        harness(tmp_path, database_url=proxy.url_through(direct)) as app,
        webhook_receiver(app.secret) as receiver,
    ):
        job_id = app.finished_job(receiver.url)
        store = app.services.store
        record = store.record_delivery_attempt
        tries: list[object] = []

        def cut_first(*args: Any, **kwargs: Any) -> None:
            tries.append(args)
            if len(tries) == 1:
                proxy.cut()
            record(*args, **kwargs)

        monkeypatch.setattr(store, "record_delivery_attempt", cut_first)
        with app.dispatching() as dispatcher:
            wait_until(lambda: len(tries) >= 2, "recording was retried")
            assert dispatcher.recording_outage.down
            proxy.restore()
            delivered = app.wait_for(job_id, lambda r: r.state == "delivered")
            later = app.finished_job(receiver.url)
            app.wait_for(later, lambda r: r.state == "delivered")
    assert codes(delivered) == [200] and [r.status for r in receiver.received] == [200, 200]
    assert not dispatcher.recording_outage.down and not dispatcher.outage.down
