"""The webhook target checks: the address classifier, literal spellings, URL rules, and the
check on resolved addresses (with a fake resolver: no DNS, no network)."""

# ruff: noqa: RUF001 - full-width and ideographic spellings are what is under test

from __future__ import annotations

import asyncio
import ipaddress

import pytest

from herald_shared.webhooks.ssrf import (
    IPAddress,
    ResolutionError,
    UnsafeTargetError,
    check_url,
    literal_address,
    parse_target,
    refusal_reason,
    resolve_target,
)

REFUSED = {
    "127.0.0.1": "loopback",
    "127.255.255.254": "loopback",
    "10.0.0.1": "private",
    "172.16.5.4": "private",
    "192.168.1.1": "private",
    "169.254.169.254": "link-local",
    "100.64.0.1": "shared",
    "100.100.100.200": "shared",
    "0.0.0.0": "unspecified",  # noqa: S104
    "0.1.2.3": "private",
    "224.0.0.1": "multicast",
    "239.255.255.250": "multicast",
    "255.255.255.255": "private",
    "240.0.0.1": "private",
    "192.0.2.10": "private",
    "198.18.0.1": "private",
    "::1": "loopback",
    "::": "unspecified",
    "fe80::1": "link-local",
    "fc00::1": "private",
    "fd12:3456::1": "private",
    "fec0::1": "site-local",
    "ff02::1": "multicast",
    "2001:db8::1": "private",
    "::ffff:127.0.0.1": "loopback address embedded",
    "::ffff:10.0.0.1": "private address embedded",
    "::ffff:169.254.169.254": "link-local address embedded",
    "64:ff9b::7f00:1": "loopback address embedded",
    "64:ff9b::a9fe:a9fe": "link-local address embedded",
    "2002:7f00:1::": "loopback address embedded",
    "2002:a00:1::": "private address embedded",
    "::127.0.0.1": "loopback address embedded",
}
ALLOWED = ["8.8.8.8", "1.1.1.1", "93.184.216.34", "2606:4700:4700::1111", "2a00:1450:4001::200e"]


@pytest.mark.parametrize(("address", "why"), REFUSED.items())
def test_non_global_addresses_are_refused(address: str, why: str) -> None:
    reason = refusal_reason(ipaddress.ip_address(address))
    assert reason is not None
    assert why in reason, reason


@pytest.mark.parametrize("address", ALLOWED)
def test_global_unicast_addresses_are_allowed(address: str) -> None:
    assert refusal_reason(ipaddress.ip_address(address)) is None


@pytest.mark.parametrize(
    ("spelling", "address"),
    [
        ("127.0.0.1", "127.0.0.1"),
        ("127.1", "127.0.0.1"),
        ("127.0.1", "127.0.0.1"),
        ("0x7f.1", "127.0.0.1"),
        ("0x7f000001", "127.0.0.1"),
        ("2130706433", "127.0.0.1"),
        ("0177.0.0.1", "127.0.0.1"),
        ("017700000001", "127.0.0.1"),
        ("0", "0.0.0.0"),  # noqa: S104
        ("::1", "::1"),
        ("0:0:0:0:0:0:0:1", "::1"),
        ("::ffff:7f00:1", "::ffff:127.0.0.1"),
    ],
)
def test_address_literals_are_read_as_the_c_resolver_reads_them(
    spelling: str, address: str
) -> None:
    assert literal_address(spelling) == ipaddress.ip_address(address)


@pytest.mark.parametrize("name", ["example.com", "1e100.net", "hooks.example", "deadbeef", "a.1"])
def test_names_are_not_literals(name: str) -> None:
    assert literal_address(name) is None


@pytest.mark.parametrize(
    "url",
    [
        "https://127.0.0.1/",
        "https://127.1/",
        "https://0x7f.1/",
        "https://2130706433/",
        "https://[::1]/",
        "https://[::ffff:127.0.0.1]/",
        "https://10.0.0.1/",
        "https://169.254.169.254/latest/meta-data/",
        "https://0.0.0.0/",
        "https://100.100.100.200/",
        "https://localhost/",
        "https://LOCALHOST/",
        "https://localhost./",
        "https://hooks.localhost/",
    ],
)
def test_check_url_refuses_local_targets_without_dns(url: str) -> None:
    with pytest.raises(UnsafeTargetError):
        check_url(url, allow_http=False, allow_private=False)
    assert check_url(url, allow_http=False, allow_private=True).scheme == "https"


#: Spellings a resolver or browser reads as a non-global address once normalised: a trailing
#: dot, full-width digits and dots, ideographic full stops, compatibility forms, IDNA.
NORMALISED_REFUSALS = {
    "https://127.0.0.1./": "127.0.0.1 is a loopback address",
    "https://０.０.０.０/": "0.0.0.0 is a unspecified address",
    "https://127。0。0。1/": "127.0.0.1 is a loopback address",
    "https://１２７.０.０.１/": "127.0.0.1 is a loopback address",
    "https://127．0．0．1/": "127.0.0.1 is a loopback address",
    "https://127｡0｡0｡1/": "127.0.0.1 is a loopback address",
    "https://１０.０.０.１:8443/hook": "10.0.0.1 is a private address",
    "https://169。254。169。254./latest": "169.254.169.254 is a link-local address",
    "https://0x7f.1./": "127.0.0.1 is a loopback address",
    "https://２１３０７０６４３３/": "127.0.0.1 is a loopback address",
    "https://ｌｏｃａｌｈｏｓｔ/": "localhost is a loopback name",
    "https://hooks。localhost/": "hooks.localhost is a loopback name",
}


@pytest.mark.parametrize(("url", "why"), NORMALISED_REFUSALS.items())
def test_check_url_normalises_the_host_before_checking_it(url: str, why: str) -> None:
    with pytest.raises(UnsafeTargetError) as refused:
        check_url(url, allow_http=False, allow_private=False)
    assert why in str(refused.value)


@pytest.mark.parametrize(
    ("url", "host", "literal"),
    [
        ("https://93.184.216.34./hook", "93.184.216.34", True),
        ("https://９３.１８４.２１６.３４/hook", "93.184.216.34", True),
        ("https://93。184。216。34/hook", "93.184.216.34", True),
        ("https://example.com./hook", "example.com.", False),
        ("https://ｅｘａｍｐｌｅ。com/hook", "example.com", False),
        ("https://bücher.example/hook", "xn--bcher-kva.example", False),
    ],
)
def test_normalised_global_targets_are_allowed(url: str, host: str, literal: bool) -> None:
    target = check_url(url, allow_http=False, allow_private=False)
    assert target.host == host
    assert (target.literal is not None) is literal
    assert target.path == "/hook"


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("http://example.com/", "must start with https://"),
        ("ftp://example.com/", "must start with"),
        ("https://user@example.com/", "credentials"),
        ("https://user:pw@example.com/", "credentials"),
        ("https://example.com\\@127.0.0.1/", "'\\'"),
        ("https://example.com/a b", "spaces"),
        ("https://example.com/\n", "control"),
        ("https://example.com/#x", "fragment"),
        ("https://example.com:0/", "port"),
        ("https://example.com:65536/", "port"),
        ("https://[fe80::1%25eth0]/", "zone"),
        ("https://[::1/", "malformed"),
        ("https://ex!ample.com/", "not a valid host name"),
        ("https://" + "a" * 64 + ".com/", "not a valid host name"),
        ("https:/example.com", "no host"),
        ("https://example.com/" + "a" * 2100, "longer than"),
    ],
)
def test_urls_that_are_never_called(url: str, why: str) -> None:
    with pytest.raises(UnsafeTargetError, match=None) as refused:
        parse_target(url, allow_http=False)
    assert why in str(refused.value)


def test_a_target_keeps_what_the_request_needs() -> None:
    target = check_url(
        "https://Hooks.Example.com:8443/in/herald?team=7", allow_http=False, allow_private=False
    )
    assert (target.scheme, target.host, target.port) == ("https", "hooks.example.com", 8443)
    assert target.path == "/in/herald?team=7"
    assert target.host_header == "hooks.example.com:8443"
    assert target.origin == "https://hooks.example.com:8443"
    assert target.literal is None
    plain = parse_target("http://[2606:4700::1]", allow_http=True)
    assert (plain.host_header, plain.path, plain.port) == ("[2606:4700::1]", "/", 80)
    spelled = parse_target("https://0x5d.0xb8.0xd8.0x22/", allow_http=False)
    assert spelled.host == "93.184.216.34"
    assert spelled.literal is not None
    international = parse_target("https://bücher.example/", allow_http=False)
    assert international.host == "xn--bcher-kva.example"


def _resolver(*addresses: str, calls: list[str] | None = None):
    async def resolve(host: str, port: int) -> list[IPAddress]:
        if calls is not None:
            calls.append(host)
        return [ipaddress.ip_address(a) for a in addresses]

    return resolve


async def test_a_name_resolving_to_a_private_address_is_refused() -> None:
    target = parse_target("https://hooks.example.com/", allow_http=False)
    with pytest.raises(UnsafeTargetError, match=r"resolves to 10\.0\.0\.5, a private address"):
        await resolve_target(
            target, allow_private=False, resolve_seconds=1, resolver=_resolver("10.0.0.5")
        )
    # One bad address among good ones is enough: nothing is called.
    with pytest.raises(UnsafeTargetError, match=r"169\.254\.169\.254"):
        await resolve_target(
            target,
            allow_private=False,
            resolve_seconds=1,
            resolver=_resolver("93.184.216.34", "169.254.169.254"),
        )
    allowed = await resolve_target(
        target, allow_private=True, resolve_seconds=1, resolver=_resolver("10.0.0.5")
    )
    assert allowed == [ipaddress.ip_address("10.0.0.5")]


async def test_a_global_name_resolves_to_exactly_the_checked_addresses() -> None:
    target = parse_target("https://hooks.example.com/", allow_http=False)
    addresses = await resolve_target(
        target,
        allow_private=False,
        resolve_seconds=1,
        resolver=_resolver("93.184.216.34", "2606:2800:220:1::1"),
    )
    assert [str(a) for a in addresses] == ["93.184.216.34", "2606:2800:220:1::1"]


async def test_a_literal_is_never_resolved() -> None:
    calls: list[str] = []
    target = parse_target("https://0x7f.1/", allow_http=False)
    with pytest.raises(UnsafeTargetError, match=r"127\.0\.0\.1 is a loopback address"):
        await resolve_target(
            target, allow_private=False, resolve_seconds=1, resolver=_resolver(calls=calls)
        )
    assert calls == []


async def test_a_name_that_does_not_resolve_in_time_is_a_resolution_error() -> None:
    async def slow(host: str, port: int) -> list[IPAddress]:
        await asyncio.Event().wait()
        return []

    target = parse_target("https://hooks.example.com/", allow_http=False)
    with pytest.raises(ResolutionError, match="did not resolve within"):
        await resolve_target(target, allow_private=False, resolve_seconds=0.05, resolver=slow)
    with pytest.raises(ResolutionError, match="no addresses"):
        await resolve_target(target, allow_private=False, resolve_seconds=1, resolver=_resolver())
