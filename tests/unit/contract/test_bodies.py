"""The response bodies: what is sent is what the contract writes, and the SDK reads it back."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from retouch.contract.bodies import (
    Result,
    Status,
    Upload,
    from_timestamp,
    iso_utc,
)
from retouch.contract.errors import ErrorBody
from retouch.contract.idempotency import is_valid_key


def test_timestamps_are_utc_with_milliseconds_and_a_z() -> None:
    moment = from_timestamp(1764000000.1234)
    assert iso_utc(moment) == "2025-11-24T16:00:00.123Z"
    body = json.loads(Result(request_id="r", status="in_queue", created_at=moment).to_json())
    assert body["created_at"] == "2025-11-24T16:00:00.123Z"
    assert Result.model_validate(body).created_at == datetime(
        2025, 11, 24, 16, 0, 0, 123000, tzinfo=UTC
    )


def test_only_fields_that_were_set_are_sent_and_none_reads_null() -> None:
    queued = Status(request_id="r", status="in_queue", queue_position=0, status_url="s")
    assert json.loads(queued.to_json()) == {
        "request_id": "r",
        "status": "in_queue",
        "queue_position": 0,
        "status_url": "s",
    }
    unfinished = json.loads(
        Result(request_id="r", status="in_progress", finished_at=None).to_json()
    )
    assert unfinished == {"request_id": "r", "status": "in_progress", "finished_at": None}


def test_a_size_is_bytes_on_the_wire_and_size_in_python() -> None:
    upload = Upload(url="u", size=12)
    assert json.loads(upload.to_json()) == {"url": "u", "bytes": 12}
    assert Upload.model_validate({"url": "u", "bytes": 12}).size == 12


def test_fields_a_newer_server_adds_reach_the_caller() -> None:
    status = Status.model_validate({"request_id": "r", "status": "completed", "eta_s": 3})
    assert status.finished and status.model_extra == {"eta_s": 3}


def test_the_error_envelope_leaves_out_detail_when_there_is_none() -> None:
    assert json.loads(ErrorBody(error_code=404001, error_message="gone").to_json()) == {
        "error_code": 404001,
        "error_message": "gone",
    }
    parsed = ErrorBody.model_validate(
        {
            "error_code": 422001,
            "error_message": "invalid input: seed",
            "detail": [{"field": "seed", "path": ["seed"], "message": "not an integer"}],
        }
    )
    assert parsed.detail is not None and parsed.detail[0].path == ["seed"]


def test_the_idempotency_key_rule() -> None:
    assert is_valid_key("a") and is_valid_key("x" * 255) and is_valid_key("a b")
    for bad in ("", " a", "a ", "x" * 256, "é", "a\n", "a\tb"):
        assert not is_valid_key(bad), bad
