"""A cap on request bodies and a deadline for each chunk of them.

The body is not buffered here: the cap is counted as the route reads it, so a request is
authenticated before any of its body is held in memory, and crossing the cap raises an
ApiError (413001) that the error handlers answer."""

from __future__ import annotations

import asyncio

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from retouch.api.errors import ApiError, error_response
from retouch.contract.errors import BODY_TOO_LARGE, SLOW_BODY

# A client that sends nothing for this long while uploading a body is dropped (slowloris).
BODY_CHUNK_TIMEOUT_SECONDS = 30.0


class BodyLimitMiddleware:
    def __init__(self, app: ASGIApp, *, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    def _too_large(self) -> ApiError:
        return ApiError(
            413,
            BODY_TOO_LARGE,
            f"request body is larger than {self.max_bytes} bytes: send fewer or smaller "
            "images, or pass them as URLs instead of data: URIs",
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        for name, value in scope["headers"]:
            if name == b"content-length" and value.isdigit() and int(value) > self.max_bytes:
                error = self._too_large()
                response = error_response(error.status, error.code, error.message)
                response.headers["Connection"] = "close"
                await response(scope, receive, send)
                return
        received = 0

        async def counted_receive() -> Message:
            nonlocal received
            try:
                message = await asyncio.wait_for(receive(), BODY_CHUNK_TIMEOUT_SECONDS)
            except TimeoutError:
                raise ApiError(
                    408,
                    SLOW_BODY,
                    f"the request body stalled for {BODY_CHUNK_TIMEOUT_SECONDS:.0f} s",
                ) from None
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise self._too_large()
            return message

        await self.app(scope, counted_receive, send)
