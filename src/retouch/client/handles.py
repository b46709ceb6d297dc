"""Request handles: what `submit()` returns (and `client.get(request_id)` makes), one request's
operations without passing its id again, as fal's and Replicate's clients have them.

    handle = client.submit("google/nano-banana-2/edit", input=payload)
    for event in handle.iter_events(with_logs=True):
        print(event)
    result = handle.result()

`RequestHandle` performs them blocking, `AsyncRequestHandle` as coroutines (and an async
iterator of events); each is a flow of `core.Core` bound to the request's id."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from typing import TYPE_CHECKING, Any, Concatenate, Generic, ParamSpec, Self, TypeVar, overload

from retouch.client.core import Core
from retouch.client.effects import Flow, performed_as
from retouch.client.events import Event
from retouch.client.models import Submission

if TYPE_CHECKING:
    from retouch.client.clients import AsyncClient, Client

P = ParamSpec("P")
T = TypeVar("T")
ClientT = TypeVar("ClientT", "Client", "AsyncClient")


class _RequestOperation(Generic[P, T]):
    """A flow of `Core` that takes a request id first, bound to a handle: `handle.status()`
    performs `Core.status(handle.request_id)` with the handle's client."""

    def __init__(self, flow: Callable[Concatenate[Core, str, P], Flow[T]]) -> None:
        self._flow = flow
        self.__doc__ = flow.__doc__
        self.__name__ = flow.__name__

    @overload
    def __get__(self, handle: None, owner: type[Any]) -> Self: ...

    @overload
    def __get__(self, handle: RequestHandle, owner: type[Any]) -> Callable[P, T]: ...

    @overload
    def __get__(
        self, handle: AsyncRequestHandle, owner: type[Any]
    ) -> Callable[P, Coroutine[Any, Any, T]]: ...

    def __get__(self, handle: _HandleBase[Any] | None, owner: type[Any]) -> Any:
        if handle is None:
            return self
        flow = self._flow
        client = handle.client

        @performed_as(flow, bound=2)
        def perform(*args: P.args, **kwargs: P.kwargs) -> Any:
            return client._perform(flow(client._core, handle.request_id, *args, **kwargs))

        return perform


class _HandleBase(Generic[ClientT]):
    def __init__(
        self, client: ClientT, request_id: str, submission: Submission | None = None
    ) -> None:
        self.client: ClientT = client
        self.request_id = request_id
        # The submit's answer (status_url, result_url, cancel_url…); None for client.get(id).
        self.submission = submission

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.request_id!r})"

    status = _RequestOperation(Core.status)
    result = _RequestOperation(Core.result)
    wait = _RequestOperation(Core.wait)
    cancel = _RequestOperation(Core.cancel)


class RequestHandle(_HandleBase["Client"]):
    """One request, blocking: `status()`, `result()`, `wait()`, `cancel()`,
    `iter_events()`."""

    def iter_events(
        self, *, with_logs: bool = False, timeout: float | None = None
    ) -> Iterator[Event]:
        """`Queued` / `InProgress` on every status change, then one `Completed` (whatever
        the outcome: see `result.ok`); `with_logs`: each event carries its new log lines.
        Raises WaitTimeout after `timeout` seconds (the request goes on). Leaving the loop
        early closes the event stream."""
        return self.client._iterate(
            self.client._core.events(self.request_id, with_logs=with_logs, timeout=timeout)
        )


class AsyncRequestHandle(_HandleBase["AsyncClient"]):
    """One request, as coroutines: `await status()`, `result()`, `wait()`, `cancel()`, and
    `async for event in iter_events()`."""

    def iter_events(
        self, *, with_logs: bool = False, timeout: float | None = None
    ) -> AsyncIterator[Event]:
        """As `RequestHandle.iter_events`, as an async iterator (`async for`). To close the
        stream as soon as a loop is left early, iterate inside
        `async with contextlib.aclosing(handle.iter_events()) as events:` (an async generator
        is otherwise closed only when it is collected)."""
        return self.client._iterate(
            self.client._core.events(self.request_id, with_logs=with_logs, timeout=timeout)
        )
