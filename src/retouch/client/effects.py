"""The I/O the SDK's logic asks for, and the stepping of that logic.

Every operation (in `core`) is a generator, a *flow*: it yields effects (send this request,
sleep, read the next server-sent event, call the caller back…) and receives each effect's
outcome, or its exception. An effect knows how to perform itself both ways (`run` with an
`httpx.Client`, `arun` with an `httpx.AsyncClient`), so `Client` and `AsyncClient` share all
the logic and differ only in the loop that performs effects (`FlowRunner`)."""

from __future__ import annotations

import asyncio
import functools
import inspect
import os
import time
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Callable, Generator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, TypeVar, cast

import httpx
from httpx_sse import EventSource, ServerSentEvent

T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])

# A flow yields effects, receives their outcomes and returns a T.
Flow = Generator["Effect", Any, T]


def performed_as(flow: Callable[..., Any], bound: int) -> Callable[[F], F]:
    """functools.wraps for a method that performs `flow` with its first `bound` arguments
    given (the core, a request id): help() and IDEs then show the method's own parameters,
    and the flow's result (not a `Flow[...]`) as what it returns."""

    def wrap(method: F) -> F:
        wrapped: Any = functools.wraps(flow)(method)
        signature = inspect.signature(flow)
        returns = signature.return_annotation
        if isinstance(returns, str) and returns.startswith("Flow[") and returns.endswith("]"):
            returns = returns[len("Flow[") : -1]
        wrapped.__signature__ = signature.replace(
            parameters=list(signature.parameters.values())[bound:], return_annotation=returns
        )
        del wrapped.__wrapped__  # else inspect.signature follows it back to the flow
        return cast(F, wrapped)

    return wrap


class Effect(ABC):
    @abstractmethod
    def run(self, http: httpx.Client) -> Any: ...

    @abstractmethod
    async def arun(self, http: httpx.AsyncClient) -> Any: ...


@dataclass(frozen=True)
class Send(Effect):
    """Send a request; with `stream`, the body is left unread (and must be closed)."""

    request: httpx.Request
    stream: bool = False

    def run(self, http: httpx.Client) -> httpx.Response:
        return http.send(self.request, stream=self.stream)

    async def arun(self, http: httpx.AsyncClient) -> httpx.Response:
        return await http.send(self.request, stream=self.stream)


@dataclass(frozen=True)
class ReadBody(Effect):
    response: httpx.Response

    def run(self, http: httpx.Client) -> bytes:
        return self.response.read()

    async def arun(self, http: httpx.AsyncClient) -> bytes:
        return await self.response.aread()


@dataclass(frozen=True)
class Close(Effect):
    response: httpx.Response

    def run(self, http: httpx.Client) -> None:
        self.response.close()

    async def arun(self, http: httpx.AsyncClient) -> None:
        await self.response.aclose()


@dataclass(frozen=True)
class Sleep(Effect):
    seconds: float

    def run(self, http: httpx.Client) -> None:
        time.sleep(max(0.0, self.seconds))

    async def arun(self, http: httpx.AsyncClient) -> None:
        await asyncio.sleep(max(0.0, self.seconds))


@dataclass(frozen=True)
class Notify(Effect):
    """Call the caller's callback; an async client awaits it when it returns an awaitable."""

    callback: Callable[[Any], object]
    value: Any

    def run(self, http: httpx.Client) -> None:
        self.callback(self.value)

    async def arun(self, http: httpx.AsyncClient) -> None:
        outcome = self.callback(self.value)
        if inspect.isawaitable(outcome):
            await outcome


@dataclass(frozen=True)
class Emit(Effect):
    """Hand `value` to the code iterating the flow (`iter_events`): the client's loop yields
    it instead of performing anything; a flow that emits is only ever iterated."""

    value: Any

    def run(self, http: httpx.Client) -> None:
        raise TypeError("an emitting flow must be iterated, not performed")

    async def arun(self, http: httpx.AsyncClient) -> None:
        raise TypeError("an emitting flow must be iterated, not performed")


@dataclass(frozen=True)
class ReadFile(Effect):
    path: Path

    def run(self, http: httpx.Client) -> bytes:
        return self.path.read_bytes()

    async def arun(self, http: httpx.AsyncClient) -> bytes:
        # Off the event loop: an input image can be tens of megabytes.
        return await asyncio.to_thread(self.path.read_bytes)


def write_file(path: Path, data: bytes) -> None:
    """Write through a temporary name, so an interrupted download leaves no partial file
    under the final name."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".part")
    partial.write_bytes(data)
    os.replace(partial, path)


@dataclass(frozen=True)
class WriteFile(Effect):
    path: Path
    data: bytes

    def run(self, http: httpx.Client) -> None:
        write_file(self.path, self.data)

    async def arun(self, http: httpx.AsyncClient) -> None:
        await asyncio.to_thread(write_file, self.path, self.data)


class PastDeadline(Exception):
    """Raised while reading an event stream once the caller's deadline has passed."""


class _DeadlineGuard(httpx.SyncByteStream, httpx.AsyncByteStream):
    """A response body that stops at a deadline. A server's keep-alive comments reset every
    read timeout, so without this check a stream could outlive any wait timeout."""

    def __init__(
        self, inner: httpx.SyncByteStream | httpx.AsyncByteStream, deadline: float | None
    ) -> None:
        self._inner = inner
        self._deadline = deadline

    def _check(self) -> None:
        if self._deadline is not None and time.monotonic() >= self._deadline:
            raise PastDeadline

    def __iter__(self) -> Iterator[bytes]:
        assert isinstance(self._inner, httpx.SyncByteStream)
        for chunk in self._inner:
            yield chunk
            self._check()

    async def __aiter__(self) -> AsyncIterator[bytes]:
        assert isinstance(self._inner, httpx.AsyncByteStream)
        async for chunk in self._inner:
            yield chunk
            self._check()


class EventStream:
    """The server-sent events of a streaming response, read one at a time until a deadline
    (monotonic seconds; None: no deadline)."""

    def __init__(self, response: httpx.Response, deadline: float | None) -> None:
        self.response = response
        # A view of the same connection whose body goes through the deadline check.
        view = httpx.Response(
            response.status_code,
            headers=response.headers,
            stream=_DeadlineGuard(response.stream, deadline),
            request=response.request,
        )
        self._source = EventSource(view)
        self._events: Iterator[ServerSentEvent] | None = None
        self._async_events: AsyncIterator[ServerSentEvent] | None = None

    def next(self) -> ServerSentEvent | None:
        if self._events is None:
            self._events = self._source.iter_sse()
        return next(self._events, None)

    async def anext(self) -> ServerSentEvent | None:
        if self._async_events is None:
            self._async_events = self._source.aiter_sse()
        return await anext(self._async_events, None)


@dataclass(frozen=True)
class NextEvent(Effect):
    """The stream's next event; None when the server closed it."""

    events: EventStream

    def run(self, http: httpx.Client) -> ServerSentEvent | None:
        return self.events.next()

    async def arun(self, http: httpx.AsyncClient) -> ServerSentEvent | None:
        return await self.events.anext()


@dataclass
class FlowRunner(Generic[T]):
    """Steps a flow: hands it each effect's outcome or exception, and keeps the streaming
    responses it has open, so that a driver stopped half-way (a cancelled task, Ctrl-C) can
    still close them instead of leaking pooled connections."""

    flow: Flow[T]
    streams: list[httpx.Response] = field(default_factory=list)
    _outcome: Any = None
    _error: Exception | None = None
    _result: Any = None

    def next(self) -> Effect | None:
        """The next effect to perform; None when the flow has returned (see `result`)."""
        error, self._error = self._error, None
        try:
            effect = self.flow.throw(error) if error else self.flow.send(self._outcome)
        except StopIteration as stop:
            self._result = stop.value
            return None
        if isinstance(effect, Close) and effect.response in self.streams:
            self.streams.remove(effect.response)
        return effect

    def done(self, effect: Effect, outcome: Any) -> None:
        if isinstance(effect, Send) and effect.stream:
            self.streams.append(outcome)
        self._outcome = outcome

    def failed(self, error: Exception) -> None:
        self._outcome = None
        self._error = error

    @property
    def result(self) -> T:
        result: T = self._result
        return result

    def abandon(self) -> list[httpx.Response]:
        """Stop the flow; returns the streams still open, for the driver to close."""
        self.flow.close()
        streams, self.streams = self.streams, []
        return streams
