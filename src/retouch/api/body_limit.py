"""A cap on request bodies, a deadline for each chunk of them and one for the whole body.

The body is not buffered here: the cap is counted as the route reads it, so a request is
authenticated before any of its body is held in memory, and crossing the cap raises an
ApiError (413001) that the error handlers answer."""

from __future__ import annotations

import asyncio

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from retouch.api.errors import ApiError, answer
from retouch.contract.errors import BODY_TOO_LARGE, SLOW_BODY

# A client that sends nothing for this long while uploading a body is dropped (slowloris).
BODY_CHUNK_TIMEOUT_SECONDS = 30.0


# A body given up on is not read to its end: the connection must close with the answer, or
# the rest of the body would keep it open (a byte arriving after the answer cancels
# uvicorn's keep-alive timeout, and nothing closes it then).
CLOSE: dict[str, str] = {"Connection": "close"}


class BodyLimitMiddleware:
    def __init__(self, app: ASGIApp, *, max_bytes: int, timeout_seconds: float = 60.0) -> None:
        self.app = app
        self.max_bytes = max_bytes
        # The whole body must arrive within this (a trickle of a byte a chunk never stalls).
        self.timeout_seconds = timeout_seconds

    def _too_large(self) -> ApiError:
        return ApiError(
            413,
            BODY_TOO_LARGE,
            f"request body is larger than {self.max_bytes} bytes: send fewer or smaller "
            "images, or pass them as URLs instead of data: URIs",
            headers=CLOSE,
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        for name, value in scope["headers"]:
            if name == b"content-length" and value.isdigit() and int(value) > self.max_bytes:
                forms = scope["app"].state.error_forms if "app" in scope else {}
                response = answer(forms, scope["path"], self._too_large())
                await response(scope, receive, send)
                return
        received = 0
        more_body = True
        deadline: float | None = None

        async def counted_receive() -> Message:
            nonlocal received, more_body, deadline
            if not more_body:
                return await receive()  # the body is in: this waits for a disconnect
            now = asyncio.get_running_loop().time()
            if deadline is None:
                deadline = now + self.timeout_seconds
            wait = min(BODY_CHUNK_TIMEOUT_SECONDS, deadline - now)
            try:
                message = await asyncio.wait_for(receive(), max(wait, 0.0))
            except TimeoutError:
                stalled = wait == BODY_CHUNK_TIMEOUT_SECONDS
                raise ApiError(
                    408,
                    SLOW_BODY,
                    f"the request body stalled for {BODY_CHUNK_TIMEOUT_SECONDS:.0f} s"
                    if stalled
                    else f"the request body took longer than {self.timeout_seconds:g} s",
                    headers=CLOSE,
                ) from None
            if message["type"] == "http.request":
                more_body = message.get("more_body", False)
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise self._too_large()
            return message

        await self.app(scope, counted_receive, send)
