"""The client's address behind trusted proxies (``HERALD_API_TRUSTED_PROXIES``).

``X-Forwarded-For`` is believed only from a peer in a trusted network, and then only as far as
the chain of trusted hops goes: reading from the right (each proxy appends the address it was
connected from), the first address that is not a trusted proxy is the client. Whatever a
client writes into the header itself lies to the left of that and is never read. The client
so found replaces ``scope["client"]``: the per-IP rate limit and the access log see it.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

from starlette.types import ASGIApp, Receive, Scope, Send

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_address(value: str) -> IPAddress | None:
    """An address as a hop writes it (``1.2.3.4``, ``1.2.3.4:80``, ``[::1]:80``, ``::1``), with
    IPv4-mapped IPv6 read as IPv4; None when it is not an address."""
    value = value.strip()
    if value.startswith("["):
        value = value[1:].partition("]")[0]
    elif value.count(":") == 1:
        value = value.partition(":")[0]
    try:
        address = ipaddress.ip_address(value)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def forwarded_client(
    peer: str, forwarded_for: Iterable[str], trusted: tuple[IPNetwork, ...]
) -> str | None:
    """The client's address when ``peer`` is a trusted proxy that forwarded one, else None."""
    nearest = parse_address(peer)
    if nearest is None or not _is_trusted(nearest, trusted):
        return None
    hops = [hop for header in forwarded_for for hop in header.split(",") if hop.strip()]
    for hop in reversed(hops):
        address = parse_address(hop)
        if address is None:
            break  # a hop no proxy of ours wrote: the nearest address read is as far as we go
        nearest = address
        if not _is_trusted(address, trusted):
            break
    return str(nearest)


def _is_trusted(address: IPAddress, trusted: tuple[IPNetwork, ...]) -> bool:
    return any(address in network for network in trusted)


class ForwardedClient:
    """ASGI middleware that sets ``scope["client"]`` to the client behind trusted proxies."""

    def __init__(self, app: ASGIApp, trusted: tuple[IPNetwork, ...]) -> None:
        self.app = app
        self.trusted = trusted

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and (peer := scope.get("client")) is not None:
            headers = [
                value.decode("latin-1")
                for name, value in scope["headers"]
                if name == b"x-forwarded-for"
            ]
            if headers and (client := forwarded_client(peer[0], headers, self.trusted)):
                scope["client"] = (client, 0)
        await self.app(scope, receive, send)
