"""BodyLimitMiddleware's deadline for the whole body: a trickle that never stalls still ends."""

from __future__ import annotations

import asyncio

import pytest
from starlette.types import Message, Receive, Scope, Send

from retouch.api.body_limit import BodyLimitMiddleware
from retouch.api.errors import ApiError

SCOPE: Scope = {"type": "http", "method": "POST", "headers": []}


async def read_body(_scope: Scope, receive: Receive, _send: Send) -> None:
    while (await receive()).get("more_body"):
        pass


def run(middleware: BodyLimitMiddleware, receive: Receive) -> None:
    async def send(_message: Message) -> None:
        raise AssertionError("nothing is sent")

    asyncio.run(asyncio.wait_for(middleware(SCOPE, receive, send), 30))  # hang guard


def test_trickled_body_times_out_as_a_whole() -> None:
    async def trickle() -> Message:
        await asyncio.sleep(0.02)  # far under the 30 s stall limit, forever
        return {"type": "http.request", "body": b"x", "more_body": True}

    middleware = BodyLimitMiddleware(read_body, max_bytes=10**9, timeout_seconds=0.2)
    with pytest.raises(ApiError) as caught:
        run(middleware, trickle)
    assert caught.value.status == 408 and caught.value.code == 408001
    assert "took longer than 0.2 s" in caught.value.message


def test_receive_after_the_body_is_not_timed() -> None:
    # Once the body is in, a route waiting for the client to disconnect must not get a 408.
    messages: list[Message] = [
        {"type": "http.request", "body": b"{}", "more_body": False},
        {"type": "http.disconnect"},
    ]

    async def receive() -> Message:
        message = messages.pop(0)
        if message["type"] == "http.disconnect":
            await asyncio.sleep(0.3)  # past the body deadline
        return message

    async def wait_for_disconnect(_scope: Scope, receive: Receive, _send: Send) -> None:
        await receive()
        assert (await receive())["type"] == "http.disconnect"

    run(BodyLimitMiddleware(wait_for_disconnect, max_bytes=100, timeout_seconds=0.1), receive)
