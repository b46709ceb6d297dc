"""Log lines carry the request id they are about."""

from __future__ import annotations

import asyncio
import io
import logging
from collections.abc import Callable
from datetime import datetime

import pytest
from pydantic import ValidationError

from retouch.config import Settings
from retouch.log_context import (
    FORMAT,
    REQUEST_ID,
    RequestIdFilter,
    bind_request_id,
    request_id_bound,
)

from .log_capture import json_lines


def formatted_lines(emit: Callable[[logging.Logger], None]) -> list[str]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(RequestIdFilter())
    handler.setFormatter(logging.Formatter(FORMAT))
    logger = logging.getLogger("retouch.tests.log_context")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        emit(logger)
    finally:
        logger.removeHandler(handler)
    return stream.getvalue().splitlines()


def test_a_line_inside_a_job_names_it_and_one_outside_does_not() -> None:
    def emit(logger: logging.Logger) -> None:
        logger.info("before")
        with request_id_bound("job-1"):
            logger.info("during")
            with request_id_bound("job-2"):
                logger.info("nested")
            logger.info("after nested")
        logger.info("after")

    lines = formatted_lines(emit)
    assert [line.split(" [")[1].split("]")[0] for line in lines] == [
        "-",
        "job-1",
        "job-2",
        "job-1",
        "-",
    ]
    assert lines[1].endswith("] during")


def test_a_binding_in_one_task_does_not_leak_into_another() -> None:
    seen: dict[str, str | None] = {}

    async def request(name: str, bound: bool) -> None:
        if bound:
            bind_request_id(name)
        await asyncio.sleep(0)
        seen[name] = REQUEST_ID.get()

    async def both() -> None:
        await asyncio.gather(request("a", True), request("b", False))

    asyncio.run(both())
    assert seen == {"a": "a", "b": None}
    assert REQUEST_ID.get() is None


def test_json_lines_parse_and_carry_the_request_id_and_extras() -> None:
    logger = logging.getLogger("retouch.tests.log_context.json")
    with json_lines(logger.name) as lines:
        logger.info("outside")
        with request_id_bound("job-1"):
            logger.warning("inside %s", "a job", extra={"status": 503})
            try:
                raise ValueError("boom")
            except ValueError:
                logger.exception("failed")
    outside, inside, failed = lines
    assert outside["request_id"] == "-" and outside["message"] == "outside"
    assert inside["request_id"] == "job-1"
    assert inside["level"] == "WARNING" and inside["logger"] == logger.name
    assert inside["message"] == "inside a job" and inside["status"] == 503
    assert datetime.fromisoformat(inside["time"]).tzinfo is not None
    assert failed["request_id"] == "job-1" and "ValueError: boom" in failed["exc_info"]


def test_the_format_is_a_setting_text_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    def from_environment() -> Settings:
        return Settings.model_validate({})

    monkeypatch.delenv("RETOUCH_LOG_FORMAT", raising=False)
    assert from_environment().log_format == "text"
    monkeypatch.setenv("RETOUCH_LOG_FORMAT", "json")
    assert from_environment().log_format == "json"
    monkeypatch.setenv("RETOUCH_LOG_FORMAT", "xml")
    with pytest.raises(ValidationError, match="log_format"):
        from_environment()
