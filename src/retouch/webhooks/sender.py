"""One webhook attempt: POST a signed body to a receiver, under the same address rules as input
URLs (resolved once, checked, connected to by the checked address), and say what came of it."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

import httpx

from retouch.media import pinned
from retouch.media.addresses import AddressPolicy
from retouch.media.errors import MediaError
from retouch.webhooks.backoff import retry_after

USER_AGENT: Final = "Retouch/0.1 (webhooks)"


@dataclass(frozen=True)
class Outcome:
    status_code: int | None = None
    error: str | None = None
    delivered: bool = False
    final: bool = False
    """No retry: the receiver said 410 Gone, or the delivery can never succeed."""
    retry_after: float | None = None
    """Seconds the receiver asked us to wait (Retry-After), if it did."""


class WebhookSender:
    def __init__(self, allow: tuple[str, ...], timeout: float) -> None:
        self.policy = AddressPolicy(allow)
        self.timeout = timeout

    async def send(self, url: str, body: str, headers: Mapping[str, str]) -> Outcome:
        """POST `body` (JSON) to `url`; never raises for anything the network or the receiver
        does, so one bad receiver cannot upset the dispatcher."""
        try:
            target = pinned.parse_http_url(url)
        except MediaError as error:
            return Outcome(error=f"unusable webhook URL: {error.reason}", final=True)
        try:
            # One deadline for the lookup, the connection, the upload and the answer.
            async with asyncio.timeout(self.timeout):
                return await self._post(target, body, headers)
        except TimeoutError:
            return Outcome(error=f"timed out after {self.timeout:g} s")
        except MediaError as error:  # a refused address, an unknown host
            return Outcome(error=error.reason)
        except httpx.HTTPError as error:
            reason = pinned.transport_reason(
                error, connect_timeout=self.timeout, read_timeout=self.timeout, action="send"
            )
            return Outcome(error=reason)

    async def _post(self, target: httpx.URL, body: str, headers: Mapping[str, str]) -> Outcome:
        addresses = await pinned.resolve(target, self.policy, self.timeout)
        sent_headers = {
            **headers,
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
            "Accept-Encoding": "identity",
        }
        async with pinned.pinned_client(httpx.Timeout(self.timeout)) as client:
            response = await pinned.send_pinned(
                client, "POST", target, addresses, sent_headers, body.encode()
            )
            # The status is the whole answer: the receiver's body is never read.
            await response.aclose()
        return _judge(response)


def _judge(response: httpx.Response) -> Outcome:
    code = response.status_code
    if response.is_success:
        return Outcome(status_code=code, delivered=True)
    if code == 410:
        return Outcome(
            status_code=code,
            error="HTTP 410 Gone: the receiver asked for no more attempts",
            final=True,
        )
    if response.is_redirect:
        # Following it would connect to an address nobody checked at submit.
        location = response.headers.get("location", "")
        return Outcome(
            status_code=code,
            error=f"HTTP {code} redirect to {pinned.describe_url(location) or '(no Location)'} not "
            "followed: give the final URL as the webhook",
        )
    return Outcome(
        status_code=code,
        error=f"HTTP {code}",
        retry_after=retry_after(response.headers),
    )
