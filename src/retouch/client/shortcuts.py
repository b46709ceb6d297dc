"""Module-level shortcuts on one default `Client`, made on first use from the environment
(RETOUCH_URL, RETOUCH_API_KEY) or the config file, as `fal_client.run` and `replicate.run`:

    import retouch.client

    result = retouch.client.run("google/nano-banana-2/edit", input=payload)

The default client is made once per process (thread-safe) and kept: call
`reset_default_client()` after changing the environment. Async code makes its own
`AsyncClient` (an httpx async client belongs to one event loop)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from typing import Any, Concatenate, ParamSpec, TypeVar, Unpack

from retouch.client.clients import Client
from retouch.client.core import Core
from retouch.client.effects import Flow, performed_as
from retouch.client.handles import RequestHandle
from retouch.client.models import SubmitOptions
from retouch.contract.inputs import DEFAULT_ENDPOINT

P = ParamSpec("P")
T = TypeVar("T")

_default: Client | None = None
_lock = threading.Lock()


def default_client() -> Client:
    """The client the shortcuts use, made on first use (ConfigurationError when no key)."""
    global _default
    with _lock:
        if _default is None:
            _default = Client()
        return _default


def reset_default_client() -> None:
    """Close the default client; the next shortcut makes a new one (from the environment as
    it is then)."""
    global _default
    with _lock:
        previous, _default = _default, None
    if previous is not None:
        previous.close()


def _on_default(flow: Callable[Concatenate[Core, P], Flow[T]]) -> Callable[P, T]:
    """`Client.<flow>` performed by the default client."""

    @performed_as(flow, bound=1)
    def shortcut(*args: P.args, **kwargs: P.kwargs) -> T:
        client = default_client()
        return client._perform(flow(client._core, *args, **kwargs))

    return shortcut


run = _on_default(Core.run)
edit = _on_default(Core.edit)
wait = _on_default(Core.wait)
status = _on_default(Core.status)
result = _on_default(Core.result)
cancel = _on_default(Core.cancel)
upload = _on_default(Core.upload)
download = _on_default(Core.download)


def submit(
    endpoint: str = DEFAULT_ENDPOINT,
    input: Mapping[str, Any] | None = None,
    **options: Unpack[SubmitOptions],
) -> RequestHandle:
    return default_client().submit(endpoint, input, **options)


submit.__doc__ = Core.submit.__doc__


def get(request_id: str) -> RequestHandle:
    """A handle of a request submitted before, on the default client; sends nothing."""
    return default_client().get(request_id)
