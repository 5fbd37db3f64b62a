"""Reading the client's address from X-Forwarded-For, only through trusted proxies."""

from __future__ import annotations

import ipaddress

import pytest

from herald_api.http.forwarded import forwarded_client, parse_address

TRUSTED = (ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("fd00::/8"))


@pytest.mark.parametrize(
    ("peer", "headers", "client"),
    [
        pytest.param("198.51.100.1", ["203.0.113.9"], None, id="untrusted-peer-is-not-believed"),
        pytest.param("10.0.0.5", ["203.0.113.9"], "203.0.113.9", id="one-trusted-proxy"),
        pytest.param(
            "10.0.0.5", ["1.1.1.1, 203.0.113.9"], "203.0.113.9", id="client-prefix-is-ignored"
        ),
        pytest.param(
            "10.0.0.5", ["1.1.1.1, 203.0.113.9, 10.2.3.4"], "203.0.113.9", id="two-proxies"
        ),
        pytest.param("10.0.0.5", ["1.1.1.1", "203.0.113.9"], "203.0.113.9", id="header-lines"),
        pytest.param("10.0.0.5", ["10.9.9.9, 10.2.3.4"], "10.9.9.9", id="all-hops-trusted"),
        pytest.param("10.0.0.5", ["garbage, 10.2.3.4"], "10.2.3.4", id="garbage-stops-the-walk"),
        pytest.param("10.0.0.5", ["203.0.113.9:4711"], "203.0.113.9", id="with-port"),
        pytest.param("10.0.0.5", ["[2001:db8::1]:443"], "2001:db8::1", id="bracketed-ipv6"),
        pytest.param("10.0.0.5", ["::ffff:203.0.113.9"], "203.0.113.9", id="ipv4-mapped"),
        pytest.param("fd00::1", ["2001:db8::7"], "2001:db8::7", id="ipv6-proxy"),
        pytest.param("::ffff:10.0.0.5", ["203.0.113.9"], "203.0.113.9", id="mapped-peer"),
        pytest.param("10.0.0.5", [" , "], "10.0.0.5", id="empty-header"),
    ],
)
def test_forwarded_client(peer: str, headers: list[str], client: str | None) -> None:
    assert forwarded_client(peer, headers, TRUSTED) == client


def test_nothing_is_trusted_without_trusted_networks() -> None:
    assert forwarded_client("10.0.0.5", ["203.0.113.9"], ()) is None


@pytest.mark.parametrize("value", ["", "x", "1.2.3", "256.1.1.1", "host:80", "[nope]:80"])
def test_what_is_not_an_address(value: str) -> None:
    assert parse_address(value) is None
