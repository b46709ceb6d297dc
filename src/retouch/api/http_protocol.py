"""uvicorn's httptools protocol with a cap on a request's head and a deadline for reading it.

httptools has no limit of its own: it gathers a header of any size in memory, and a head sent
a byte at a time is never timed out (uvicorn's keep-alive timer only runs between requests).
h11 has a size limit but answers a bare 400, and polls cost more through it, so the limits
are added to httptools here, answering with the error envelope where an answer is possible.
`retouch serve` passes `functools.partial(HardenedHttpToolsProtocol, …)` as uvicorn's `http`:
a partial of a module-level class survives the pickling of `--api-processes N`."""

from __future__ import annotations

import asyncio
from typing import Any, Final

from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from retouch.contract.errors import HEADERS_TOO_LARGE, SLOW_BODY, ErrorBody

MAX_HEAD_BYTES: Final = 16 * 1024
# After an error answer, the client's unread bytes are read and dropped this long before the
# socket closes: closing with unread data sends a reset, which can discard the answer.
LINGER_SECONDS: Final = 2.0


class HardenedHttpToolsProtocol(HttpToolsProtocol):
    def __init__(
        self,
        *args: Any,
        max_head_bytes: int = MAX_HEAD_BYTES,
        head_timeout_seconds: float = 10.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.max_head_bytes = max_head_bytes
        self.head_timeout_seconds = head_timeout_seconds
        self._head_bytes = self._raw_head_bytes = 0
        self._reading_head = False
        self._rejected = False
        self._head_deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        # Also bounds a connection that never sends a byte.
        self._arm_head_deadline()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_head_deadline()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._rejected:
            return  # lingering after an error answer: drop what the client still sends
        super().data_received(data)
        if self.transport.is_closing() or not self._reading_head:
            return
        # A head still incomplete after this read: httptools holds its header so far, so cap
        # the bytes read for it (a read is at most 256 KiB, so little is held beyond the cap).
        self._raw_head_bytes += len(data)
        if self._raw_head_bytes > self.max_head_bytes:
            self._head_too_large()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._reading_head = True
        self._head_bytes = self._raw_head_bytes = 0
        if self._head_deadline is None:
            self._arm_head_deadline()

    # A head that arrives whole in one read is measured by its parts, as httptools hands them.
    def on_url(self, url: bytes) -> None:
        super().on_url(url)
        self._head_bytes += len(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        super().on_header(name, value)
        self._head_bytes += len(name) + len(value) + 4  # ": " and CRLF

    def on_headers_complete(self) -> None:
        self._reading_head = False
        self._cancel_head_deadline()
        if self._head_bytes > self.max_head_bytes:
            self._head_too_large()  # the app never sees this request
            return
        super().on_headers_complete()

    # The parser goes on through the rest of a read after a rejected head: ignore it.
    def on_body(self, body: bytes) -> None:
        if not self._rejected:
            super().on_body(body)

    def on_message_complete(self) -> None:
        if not self._rejected:
            super().on_message_complete()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        # Between requests uvicorn's keep-alive timer applies; ours starts with the next head
        # (or runs on, for a pipelined head begun meanwhile).
        if not self._reading_head:
            self._cancel_head_deadline()

    def _head_too_large(self) -> None:
        self._reject(
            431,
            HEADERS_TOO_LARGE,
            f"the request line and headers are larger than {self.max_head_bytes} bytes: "
            "send fewer or shorter headers",
        )

    def _arm_head_deadline(self) -> None:
        self._head_deadline = self.loop.call_later(self.head_timeout_seconds, self._head_timed_out)

    def _cancel_head_deadline(self) -> None:
        if self._head_deadline is not None:
            self._head_deadline.cancel()
            self._head_deadline = None

    def _head_timed_out(self) -> None:
        self._head_deadline = None
        if self.transport.is_closing():
            return
        if not self._reading_head:
            self.transport.close()  # nothing sent at all: nobody to answer
            return
        # 408001 is every too-slow request: its head here, its body in body_limit.py.
        self._reject(
            408,
            SLOW_BODY,
            f"the request line and headers took longer than {self.head_timeout_seconds:g} s",
        )

    def _reject(self, status: int, code: int, message: str) -> None:
        """Answer the error envelope, stop reading requests, and close after a linger."""
        self._rejected = True
        self._reading_head = False
        self._cancel_head_deadline()
        if self.cycle is not None and not self.cycle.response_complete:
            # A pipelined head while an answer is being sent: ours would interleave with it.
            self.transport.close()
            return
        body = ErrorBody(error_code=code, error_message=message).to_json()
        # Server and Date, as on uvicorn's own answers.
        defaults = [b"%s: %s\r\n" % pair for pair in self.server_state.default_headers]
        self.transport.write(
            b"".join(
                (
                    STATUS_LINE[status],
                    *defaults,
                    b"content-type: application/json\r\n",
                    b"content-length: %d\r\n" % len(body),
                    b"connection: close\r\n\r\n",
                    body,
                )
            )
        )
        if self.transport.can_write_eof():
            self.transport.write_eof()
        self.loop.call_later(LINGER_SECONDS, self.transport.close)
