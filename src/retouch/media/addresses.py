"""Which network addresses Retouch may fetch from: public ones, plus what the operator allows.

The check runs on resolved addresses, never on the URL's text: `getaddrinfo` turns
`2130706433`, `0x7f.1` or `127.1` into 127.0.0.1, so string blocklists miss them.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Iterable, Sequence
from typing import Final

from retouch.media.errors import MediaError

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

# Metadata services hand out cloud credentials: name them in the message so the refusal is clear.
_METADATA: Final = frozenset(
    {ipaddress.ip_address("169.254.169.254"), ipaddress.ip_address("fd00:ec2::254")}
)

# Ranges that Python 3.11's flags misjudge or do not name.
_NAMED_RANGES: Final[tuple[tuple[IPNetwork, str], ...]] = (
    # CGNAT: is_private is False here, so a check built on is_private lets it through.
    (ipaddress.ip_network("100.64.0.0/10"), "shared CGNAT range"),
    # Local-use NAT64 (RFC 8215) embeds the IPv4 at an operator-chosen offset, so it cannot be
    # unwrapped reliably; it is never globally reachable, so refuse it whole.
    (ipaddress.ip_network("64:ff9b:1::/48"), "local-use NAT64 prefix"),
)

# The well-known NAT64 prefix (RFC 6052) carries the IPv4 in its last 32 bits.
_NAT64: Final = ipaddress.ip_network("64:ff9b::/96")
# IPv4-compatible addresses (deprecated ::a.b.c.d); `::` and `::1` are excluded below.
_IPV4_COMPATIBLE: Final = ipaddress.ip_network("::/96")

_ADVICE: Final = (
    "Retouch only fetches public addresses; an operator can allow hosts with RETOUCH_FETCH_ALLOW"
)


def _normalise_host(host: str) -> str:
    return host.strip().strip("[]").rstrip(".").lower()


# What inet_aton may read as IPv4: decimal, octal and hex parts, one to four of them.
_IPV4_NUMBERS: Final = re.compile(r"(?:0x[0-9a-f]*|[0-9]+)(?:\.(?:0x[0-9a-f]*|[0-9]+)){0,3}")


def literal_address(host: str) -> IPAddress | None:
    """The address `host` names when it is an IP literal in any form the resolver accepts
    (`127.0.0.1`, `::1`, and `2130706433`, `0x7f000001`, `127.1`, `0177.0.0.1`, `0` too, which
    `getaddrinfo` reads as IPv4 without a lookup), or None for a host name."""
    host = _normalise_host(host)
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        pass
    if not _IPV4_NUMBERS.fullmatch(host):
        return None
    try:
        return ipaddress.IPv4Address(socket.inet_aton(host))
    except OSError:
        return None  # e.g. a part out of range: getaddrinfo would look it up as a name


def _embedded_ipv4(address: ipaddress.IPv6Address) -> tuple[str, ipaddress.IPv4Address] | None:
    """The IPv4 address an IPv6 form tunnels to, with the form's name; None for plain IPv6.

    Python reports several of these forms as global (6to4 and NAT64 of 127.0.0.1 included), so
    the IPv4 inside has to be checked on its own."""
    if address.ipv4_mapped is not None:
        return "IPv4-mapped", address.ipv4_mapped
    if address.sixtofour is not None:
        return "6to4", address.sixtofour
    if address.teredo is not None:
        return "Teredo", address.teredo[1]  # (server, client): the client is the destination
    if address in _NAT64:
        return "NAT64", ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    if address in _IPV4_COMPATIBLE and int(address) > 1:
        return "IPv4-compatible", ipaddress.IPv4Address(int(address))
    return None


def _classify(address: IPAddress) -> str | None:
    """Why the address itself is not public, or None when it is."""
    if address in _METADATA:
        return "cloud metadata"
    for network, label in _NAMED_RANGES:
        if address in network:
            return label
    # Order matters: 0.0.0.0 is also private and 240/4 is also private; name the precise one.
    # is_global alone is not enough either: Python 3.11 calls ff02::1 global.
    flags = (
        (address.is_loopback, "loopback"),
        (address.is_unspecified, "unspecified address"),
        (address.is_link_local, "link-local"),
        (address.is_multicast, "multicast"),
        (address.is_reserved, "reserved range"),
        (address.is_private, "private network"),
        (not address.is_global, "not a public address"),
    )
    return next((label for flagged, label in flags if flagged), None)


def refusal_reason(address: IPAddress) -> str | None:
    """Why Retouch will not connect to `address` (ignoring any allow-list), or None if public."""
    if isinstance(address, ipaddress.IPv6Address) and (wrapped := _embedded_ipv4(address)):
        form, inner = wrapped
        if (reason := _classify(inner)) is not None:
            return f"{form} form of {inner}, {reason}"
        # A public IPv4 behind a translation prefix is as reachable as the IPv4 itself. Teredo is
        # a client-side tunnel (2001::/32, not global), never a server to fetch from.
        return "Teredo tunnel" if form == "Teredo" else None
    return _classify(address)


class AddressPolicy:
    """Refuses non-public addresses unless the operator allow-listed the host or the address.

    Each allow-list entry is a host name (matched case-insensitively), an IP address, or a CIDR.
    An allow-listed host name may resolve anywhere: the operator vouched for the name.
    """

    def __init__(self, allow: Iterable[str] = ()) -> None:
        hosts: set[str] = set()
        networks: list[IPNetwork] = []
        for raw in allow:
            entry = _normalise_host(raw)
            if not entry:
                continue
            try:
                networks.append(ipaddress.ip_network(entry, strict=False))
            except ValueError:
                # A mistyped CIDR must not silently become a host name that never matches.
                if "/" in entry or " " in entry:
                    raise ValueError(
                        f"RETOUCH_FETCH_ALLOW entry {raw!r} is not a host, IP or CIDR"
                    ) from None
                hosts.add(entry)
        self._hosts: frozenset[str] = frozenset(hosts)
        self._networks: tuple[IPNetwork, ...] = tuple(networks)

    def _allows(self, host: str, address: IPAddress) -> bool:
        if _normalise_host(host) in self._hosts:
            return True
        candidates: list[IPAddress] = [address]
        if isinstance(address, ipaddress.IPv6Address) and (wrapped := _embedded_ipv4(address)):
            candidates.append(wrapped[1])
        # `in` across IP versions is simply False, so mixed lists need no special case.
        return any(a in network for a in candidates for network in self._networks)

    def check(self, host: str, addresses: Sequence[IPAddress]) -> None:
        """Raise MediaError unless every resolved address of `host` may be fetched from.

        One bad address refuses the host: a name answering both a public and a private address
        is how DNS rebinding starts."""
        if not addresses:
            raise MediaError(f"host {host} has no addresses")
        for address in addresses:
            if self._allows(host, address):
                continue
            reason = refusal_reason(address)
            if reason is not None:
                raise MediaError(f"refused address {address} ({reason}) for host {host}: {_ADVICE}")
