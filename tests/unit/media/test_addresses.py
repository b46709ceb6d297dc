"""AddressPolicy: every non-public form is refused, public ones and allow-listed ones pass."""

from __future__ import annotations

import ipaddress

import pytest

from retouch.media.addresses import AddressPolicy, IPAddress, literal_address
from retouch.media.errors import MediaError


def ip(text: str) -> IPAddress:
    return ipaddress.ip_address(text)


REFUSED = {
    "127.0.0.1": "loopback",
    "10.0.0.1": "private network",
    "172.16.5.4": "private network",
    "172.31.255.255": "private network",
    "192.168.1.1": "private network",
    "100.64.0.1": "CGNAT",
    "169.254.169.254": "cloud metadata",
    "169.254.1.1": "link-local",
    "0.0.0.0": "unspecified",
    "240.0.0.1": "reserved",
    "224.0.0.1": "multicast",
    "::1": "loopback",
    "::": "unspecified",
    "::ffff:127.0.0.1": "IPv4-mapped form of 127.0.0.1, loopback",
    "::ffff:10.1.2.3": "IPv4-mapped form of 10.1.2.3, private",
    "::127.0.0.1": "IPv4-compatible form of 127.0.0.1",
    "64:ff9b::a9fe:a9fe": "NAT64 form of 169.254.169.254, cloud metadata",
    "64:ff9b::7f00:1": "NAT64 form of 127.0.0.1",
    "64:ff9b:1::a9fe:a9fe": "local-use NAT64",
    "2002:7f00:1::1": "6to4 form of 127.0.0.1, loopback",
    "2002:a9fe:a9fe::1": "6to4 form of 169.254.169.254",
    # Teredo: the client IPv4 is stored inverted; this one hides 127.0.0.1 (0x80ff:fffe).
    "2001:0:4136:e378:8000:63bf:80ff:fffe": "Teredo form of 127.0.0.1",
    "2001:0:4136:e378:8000:63bf:a247:2bdd": "Teredo tunnel",  # client 93.184.212.34: public
    "fe80::1": "link-local",
    "ff02::1": "multicast",  # Python 3.11 calls this global
    "fd00:ec2::254": "cloud metadata",
    "fc00::1": "private network",
    "2001:db8::1": "private network",
}

PUBLIC = ["93.184.216.34", "8.8.8.8", "2606:4700::1", "2a00:1450:4001::200e"]
# Translation forms of a public IPv4 reach that IPv4, so they are as public as it is.
PUBLIC_WRAPPED = ["::ffff:93.184.216.34", "64:ff9b::5db8:d822", "2002:5db8:d822::1"]


@pytest.mark.parametrize(("address", "reason"), REFUSED.items())
def test_refuses_non_public(address: str, reason: str) -> None:
    with pytest.raises(MediaError) as caught:
        AddressPolicy().check("example.com", [ip(address)])
    message = str(caught.value)
    assert f"refused address {ipaddress.ip_address(address)} (" in message
    assert reason in message
    assert "for host example.com" in message
    assert "RETOUCH_FETCH_ALLOW" in message


@pytest.mark.parametrize("address", PUBLIC + PUBLIC_WRAPPED)
def test_allows_public(address: str) -> None:
    AddressPolicy().check("example.com", [ip(address)])


def test_message_format() -> None:
    with pytest.raises(MediaError) as caught:
        AddressPolicy().check("example.com", [ip("10.0.0.1")])
    assert str(caught.value) == (
        "refused address 10.0.0.1 (private network) for host example.com: Retouch only fetches "
        "public addresses; an operator can allow hosts with RETOUCH_FETCH_ALLOW"
    )


def test_one_bad_address_refuses_the_host() -> None:
    # A name answering both public and private addresses is a DNS rebinding setup.
    with pytest.raises(MediaError, match=r"refused address 127\.0\.0\.1"):
        AddressPolicy().check("rebind.example", [ip("93.184.216.34"), ip("127.0.0.1")])


def test_no_addresses_refused() -> None:
    with pytest.raises(MediaError, match="no addresses"):
        AddressPolicy().check("example.com", [])


def test_allow_by_host_name_case_insensitive() -> None:
    policy = AddressPolicy(["Images.Internal", "cdn.example."])
    policy.check("images.internal", [ip("10.0.0.5"), ip("fd00::5")])
    policy.check("IMAGES.INTERNAL.", [ip("127.0.0.1")])
    policy.check("cdn.example", [ip("192.168.0.1")])
    with pytest.raises(MediaError):
        policy.check("other.internal", [ip("10.0.0.5")])


def test_allow_by_ip_and_cidr() -> None:
    policy = AddressPolicy(["10.1.0.0/16", "127.0.0.1", "[fd00::1]", " 192.168.7.0/24 ", ""])
    policy.check("a.internal", [ip("10.1.200.3")])
    policy.check("b.internal", [ip("127.0.0.1")])
    policy.check("c.internal", [ip("fd00::1")])
    policy.check("d.internal", [ip("192.168.7.9")])
    policy.check("e.internal", [ip("::ffff:10.1.0.9")])  # the mapped form of an allowed IPv4
    for refused in ["10.2.0.1", "127.0.0.2", "fd00::2", "192.168.8.1"]:
        with pytest.raises(MediaError):
            policy.check("x.internal", [ip(refused)])


def test_allow_list_does_not_open_other_ranges() -> None:
    policy = AddressPolicy(["10.0.0.0/8"])
    with pytest.raises(MediaError, match=r"169\.254\.169\.254 \(cloud metadata\)"):
        policy.check("x", [ip("10.0.0.1"), ip("169.254.169.254")])


@pytest.mark.parametrize("entry", ["10.0.0.0/33", "10.0.0.0/8/8", "bad host"])
def test_malformed_allow_entry_is_a_config_error(entry: str) -> None:
    with pytest.raises(ValueError, match="RETOUCH_FETCH_ALLOW"):
        AddressPolicy([entry])


@pytest.mark.parametrize(
    ("host", "address"),
    [
        ("2130706433", "127.0.0.1"),
        ("0x7f000001", "127.0.0.1"),
        ("127.1", "127.0.0.1"),
        ("0", "0.0.0.0"),
        ("0177.0.0.1", "127.0.0.1"),
        ("0x7f.1", "127.0.0.1"),
        ("10.0.0.1.", "10.0.0.1"),
        ("[::1]", "::1"),
    ],
)
def test_literal_address_reads_every_resolver_form(host: str, address: str) -> None:
    assert literal_address(host) == ip(address)


@pytest.mark.parametrize("host", ["example.com", "1e100.net", "deadbeef", "1.2.3.4.5", "0x"])
def test_host_names_are_not_literals(host: str) -> None:
    assert literal_address(host) is None
