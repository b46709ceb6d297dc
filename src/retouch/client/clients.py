"""`Client` and `AsyncClient`: the operations of `core.Core`, performed with httpx.

Each operation is defined once, as a flow on `Core`; `_Operation` binds it to a client,
whose only job is to perform the flow's effects: blocking for `Client`, awaited for
`AsyncClient` (whose methods are coroutines). A flow that emits events (`Core.events`) is
iterated instead: the client's loop hands each emitted value to the caller."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Coroutine, Iterator, Mapping
from typing import Any, Concatenate, Generic, ParamSpec, Self, TypeVar, Unpack, overload

import httpx

from retouch.client.config import resolve_config
from retouch.client.core import Core, PollPolicy, RetryPolicy
from retouch.client.effects import Emit, Flow, FlowRunner, performed_as
from retouch.client.events import Event
from retouch.client.handles import AsyncRequestHandle, RequestHandle
from retouch.client.models import SubmitOptions
from retouch.contract.inputs import DEFAULT_ENDPOINT

P = ParamSpec("P")
T = TypeVar("T")
HttpT = TypeVar("HttpT", httpx.Client, httpx.AsyncClient)

DEFAULT_TIMEOUT = httpx.Timeout(30.0, connect=10.0)


class _Operation(Generic[P, T]):
    """A flow of `Core`, bound to the client it is read from: `client.status(id)` performs
    `Core.status(id)` with that client's I/O."""

    def __init__(self, flow: Callable[Concatenate[Core, P], Flow[T]]) -> None:
        self._flow = flow
        # help(Client.run) shows the flow's documentation.
        self.__doc__ = flow.__doc__
        self.__name__ = flow.__name__

    @overload
    def __get__(self, client: None, owner: type[Any]) -> Self: ...

    @overload
    def __get__(self, client: Client, owner: type[Any]) -> Callable[P, T]: ...

    @overload
    def __get__(
        self, client: AsyncClient, owner: type[Any]
    ) -> Callable[P, Coroutine[Any, Any, T]]: ...

    def __get__(self, client: _ClientBase[Any] | None, owner: type[Any]) -> Any:
        if client is None:
            return self
        flow = self._flow

        @performed_as(flow, bound=1)
        def perform(*args: P.args, **kwargs: P.kwargs) -> Any:
            return client._perform(flow(client._core, *args, **kwargs))

        return perform


class _ClientBase(Generic[HttpT]):
    """Configuration and the operations, shared by both clients."""

    def __init__(
        self,
        base_url: str | None = None,
        api_key: str | None = None,
        *,
        timeout: float | httpx.Timeout = DEFAULT_TIMEOUT,
        max_retries: int = 3,
        use_stream: bool = True,
        poll: PollPolicy | None = None,
        http_client: HttpT | None = None,
    ) -> None:
        """`base_url` and `api_key` default to RETOUCH_URL / RETOUCH_API_KEY, then the
        config file (see `retouch.client.config`). `timeout` bounds each HTTP call (not a
        wait: see `wait(timeout=)`); `max_retries` the retries of requests safe to repeat;
        `use_stream=False` always polls; `http_client` brings your own httpx client
        (proxies, transports), which is then not closed by this one."""
        self._core = Core(
            resolve_config(base_url, api_key),
            timeout=timeout if isinstance(timeout, httpx.Timeout) else httpx.Timeout(timeout),
            retry=RetryPolicy(max_retries=max_retries),
            poll=poll or PollPolicy(),
            use_stream=use_stream,
        )
        self._owns_http = http_client is None
        self._http: HttpT = self._new_http() if http_client is None else http_client

    @property
    def base_url(self) -> str:
        return self._core.config.url

    def _new_http(self) -> HttpT:
        raise NotImplementedError

    def _perform(self, flow: Flow[T]) -> Any:
        raise NotImplementedError

    status = _Operation(Core.status)
    result = _Operation(Core.result)
    fetch_status = _Operation(Core.fetch_status)
    fetch_result = _Operation(Core.fetch_result)
    cancel = _Operation(Core.cancel)
    upload = _Operation(Core.upload)
    list_requests = _Operation(Core.list_requests)
    webhook_secret = _Operation(Core.webhook_secret)
    wait = _Operation(Core.wait)
    run = _Operation(Core.run)
    edit = _Operation(Core.edit)
    prepare_images = _Operation(Core.prepare_images)
    download = _Operation(Core.download)


class Client(_ClientBase[httpx.Client]):
    """The blocking client. Use it as a context manager, or call `close()`."""

    def _new_http(self) -> httpx.Client:
        return httpx.Client()

    def submit(
        self,
        endpoint: str = DEFAULT_ENDPOINT,
        input: Mapping[str, Any] | None = None,
        **options: Unpack[SubmitOptions],
    ) -> RequestHandle:
        submission = self._perform(self._core.submit(endpoint, input, **options))
        return RequestHandle(self, submission.request_id, submission)

    submit.__doc__ = Core.submit.__doc__

    def get(self, request_id: str) -> RequestHandle:
        """A handle of a request submitted before (or elsewhere); sends nothing."""
        return RequestHandle(self, request_id)

    def _steps(self, runner: FlowRunner[Any]) -> Iterator[Any]:
        """Perform the flow's effects, yielding what it emits."""
        try:
            while (effect := runner.next()) is not None:
                if isinstance(effect, Emit):
                    runner.done(effect, None)
                    yield effect.value
                    continue
                try:
                    runner.done(effect, effect.run(self._http))
                except Exception as error:
                    runner.failed(error)
        finally:
            for response in runner.abandon():
                response.close()

    def _perform(self, flow: Flow[T]) -> T:
        runner = FlowRunner(flow)
        for _ in self._steps(runner):
            pass
        return runner.result

    def _iterate(self, flow: Flow[None]) -> Iterator[Event]:
        return self._steps(FlowRunner(flow))

    def close(self) -> None:
        if self._owns_http:
            self._http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class AsyncClient(_ClientBase[httpx.AsyncClient]):
    """The asyncio client: the same methods as `Client`, as coroutines. Callbacks may be
    plain functions or coroutine functions. Use it with `async with`, or `await aclose()`."""

    def _new_http(self) -> httpx.AsyncClient:
        return httpx.AsyncClient()

    async def submit(
        self,
        endpoint: str = DEFAULT_ENDPOINT,
        input: Mapping[str, Any] | None = None,
        **options: Unpack[SubmitOptions],
    ) -> AsyncRequestHandle:
        submission = await self._perform(self._core.submit(endpoint, input, **options))
        return AsyncRequestHandle(self, submission.request_id, submission)

    submit.__doc__ = Core.submit.__doc__

    def get(self, request_id: str) -> AsyncRequestHandle:
        """A handle of a request submitted before (or elsewhere); sends nothing."""
        return AsyncRequestHandle(self, request_id)

    async def _steps(self, runner: FlowRunner[Any]) -> AsyncIterator[Any]:
        """Perform the flow's effects, yielding what it emits."""
        try:
            while (effect := runner.next()) is not None:
                if isinstance(effect, Emit):
                    runner.done(effect, None)
                    yield effect.value
                    continue
                try:
                    runner.done(effect, await effect.arun(self._http))
                except Exception as error:
                    runner.failed(error)
        finally:
            # Also when the task is cancelled: an unclosed stream keeps a pooled connection.
            for response in runner.abandon():
                await response.aclose()

    async def _perform(self, flow: Flow[T]) -> T:
        runner = FlowRunner(flow)
        async for _ in self._steps(runner):
            pass
        return runner.result

    def _iterate(self, flow: Flow[None]) -> AsyncIterator[Event]:
        return self._steps(FlowRunner(flow))

    async def aclose(self) -> None:
        if self._owns_http:
            await self._http.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()
