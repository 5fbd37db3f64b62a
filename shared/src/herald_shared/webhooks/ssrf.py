"""Which webhook targets may be called: URL rules, address classification, resolution.

Two checks, with the same rules:

- at creation (``check_url``): the URL's shape, and — when the host is an address literal or a
  name that is local by definition (``localhost``, ``*.localhost``) — that address, with no DNS;
- at delivery (``resolve_target``): every address the host resolves to. The caller must connect
  to one of exactly these addresses (never resolve the name again), so a DNS answer that changes
  between check and connect ("rebinding") cannot redirect the call.

Only globally routable unicast addresses are allowed unless ``allow_private`` is set: not
loopback, private, link-local (169.254/16 holds cloud metadata services), shared 100.64/10,
multicast, reserved, unspecified, nor IPv6 forms that embed such an IPv4 address (mapped,
NAT64, 6to4, Teredo). Address literals are read the way the C resolver reads them, so
``127.1``, ``0x7f.1``, ``017700000001`` and ``2130706433`` are all 127.0.0.1.

The host is normalised before either check, as a resolver or browser would read it: IDNA
(with its Unicode compatibility mapping, so full-width digits such as U+FF10 are ASCII digits
and the ideographic full stops U+3002, U+FF0E and U+FF61 are dots), lower case, and one
trailing dot ignored when deciding whether it is an address. ``https://127.0.0.1./``, or
127.0.0.1 spelled with full-width digits or ideographic full stops, is therefore an address
literal, refused without DNS.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str, int], Awaitable[list[IPAddress]]]

MAX_URL_CHARS = 2048
_DEFAULT_PORTS = {"http": 80, "https": 443}
_SHARED_ADDRESS_SPACE = ipaddress.IPv4Network("100.64.0.0/10")
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
_IPV4_COMPATIBLE = ipaddress.IPv6Network("::/96")
_LABEL = r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?"
_HOSTNAME = re.compile(rf"^{_LABEL}(?:\.{_LABEL})*\.?$")
_FORBIDDEN_CHARS = re.compile(r"[\s\\\x00-\x1f\x7f]")


class UnsafeTargetError(ValueError):
    """The URL may not be called: its shape is refused or it points at a non-global address."""


class ResolutionError(OSError):
    """The host name did not resolve (now): worth another attempt later."""


@dataclass(frozen=True, slots=True)
class Target:
    """A webhook URL taken apart: where to connect and what to say to the server there."""

    scheme: str
    #: Lower-case host, IDNA-encoded; an IPv6 literal without brackets.
    host: str
    port: int
    #: Path and query, as sent in the request line.
    path: str
    #: The address when the host is an address literal (never resolved).
    literal: IPAddress | None

    @property
    def origin(self) -> str:
        """``scheme://host:port``: the destination breakers and concurrency limits are kept for."""
        return f"{self.scheme}://{self.host_header_name}:{self.port}"

    @property
    def host_header_name(self) -> str:
        return f"[{self.host}]" if ":" in self.host else self.host

    @property
    def host_header(self) -> str:
        """The ``Host`` header: the name the server expects, with a non-default port."""
        if self.port == _DEFAULT_PORTS[self.scheme]:
            return self.host_header_name
        return f"{self.host_header_name}:{self.port}"


def literal_address(host: str) -> IPAddress | None:
    """The address ``host`` spells, read as the C resolver reads it; None for a name.

    Raises UnsafeTargetError for a malformed IPv6 literal.
    """
    if ":" in host:
        try:
            return ipaddress.IPv6Address(host)
        except ValueError as exc:
            raise UnsafeTargetError(f"{host!r} is not a valid IPv6 address") from exc
    try:
        # inet_aton accepts every form getaddrinfo does: 127.1, 0x7f.1, 2130706433, 0177.0.0.1.
        packed = socket.inet_aton(host)
    except OSError:
        return None
    return ipaddress.IPv4Address(packed)


def _embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address in _NAT64 or (address in _IPV4_COMPATIBLE and int(address) > 1):
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    if address.sixtofour is not None:
        return address.sixtofour
    if address.teredo is not None:
        return address.teredo[1]
    return None


def refusal_reason(address: IPAddress) -> str | None:
    """Why ``address`` may not be called without ``allow_private``; None for a global unicast."""
    if isinstance(address, ipaddress.IPv6Address):
        embedded = _embedded_ipv4(address)
        if embedded is not None:
            inner = refusal_reason(embedded)
            if inner is not None:
                return f"{inner} embedded in an IPv6 address"
    checks: tuple[tuple[bool, str], ...] = (
        (address.is_unspecified, "unspecified address"),
        (address.is_loopback, "loopback address"),
        (address.is_link_local, "link-local address"),
        (address.is_multicast, "multicast address"),
        (address in _SHARED_ADDRESS_SPACE, "shared address (100.64.0.0/10)"),
        (address.is_private, "private address"),
        (address.is_reserved, "reserved address"),
        (
            isinstance(address, ipaddress.IPv6Address) and address.is_site_local,
            "site-local address",
        ),
        (not address.is_global, "non-global address"),
    )
    return next((reason for refused, reason in checks if refused), None)


def _is_local_name(host: str) -> bool:
    name = host.rstrip(".")
    return name == "localhost" or name.endswith(".localhost")


def _ascii_host(host: str) -> str:
    try:
        encoded = host.encode("idna").decode("ascii") if not host.isascii() else host
    except UnicodeError as exc:
        raise UnsafeTargetError("the host name is not a valid international name") from exc
    if len(encoded.rstrip(".")) > 253 or not _HOSTNAME.match(encoded):
        raise UnsafeTargetError(f"{host!r} is not a valid host name")
    return encoded


def parse_target(url: str, *, allow_http: bool) -> Target:
    """Take ``url`` apart, refusing what is never called (any ``allow_private``)."""
    if len(url) > MAX_URL_CHARS:
        raise UnsafeTargetError(f"the URL is longer than {MAX_URL_CHARS} characters")
    if _FORBIDDEN_CHARS.search(url):
        raise UnsafeTargetError("the URL must not contain spaces, control characters or '\\'")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise UnsafeTargetError("the URL is malformed or its port is invalid") from exc
    scheme = parts.scheme.lower()
    allowed = ("https", "http") if allow_http else ("https",)
    if scheme not in allowed:
        raise UnsafeTargetError(
            f"the URL must start with {' or '.join(s + '://' for s in allowed)}"
        )
    if "@" in parts.netloc:
        raise UnsafeTargetError("the URL must not contain credentials")
    if parts.fragment or url.endswith("#"):
        raise UnsafeTargetError("the URL must not have a fragment")
    raw_host = parts.hostname
    if not raw_host:
        raise UnsafeTargetError("the URL has no host")
    if "%" in raw_host:
        raise UnsafeTargetError("the URL must not name an IPv6 zone")
    if port == 0:
        raise UnsafeTargetError("the URL's port must be between 1 and 65535")
    host = _ascii_host(raw_host) if ":" not in raw_host else raw_host
    # "127.0.0.1." names the root-relative host 127.0.0.1: the resolver reads it as the address.
    literal = literal_address(host.removesuffix(".") if ":" not in host else host)
    if literal is not None:
        host = str(literal)
    path = parts.path or "/"
    if parts.query:
        path = f"{path}?{parts.query}"
    return Target(scheme, host, port or _DEFAULT_PORTS[scheme], path, literal)


def check_url(url: str, *, allow_http: bool, allow_private: bool) -> Target:
    """The checks possible without DNS, for a URL a client asks to subscribe.

    Raises UnsafeTargetError with a message meant for the client.
    """
    target = parse_target(url, allow_http=allow_http)
    if allow_private:
        return target
    if target.literal is not None:
        reason = refusal_reason(target.literal)
        if reason is not None:
            raise UnsafeTargetError(f"{target.host_header_name} is a {reason}")
    elif _is_local_name(target.host):
        raise UnsafeTargetError(f"{target.host} is a loopback name")
    return target


async def system_resolver(host: str, port: int) -> list[IPAddress]:
    """The addresses ``getaddrinfo`` gives for ``host``, in its order, without duplicates."""
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP
        )
    except socket.gaierror as exc:
        raise ResolutionError(f"{host} did not resolve: {exc.strerror}") from exc
    addresses: list[IPAddress] = []
    for _family, _type, _proto, _name, sockaddr in infos:
        address = ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0])
        if address not in addresses:
            addresses.append(address)
    return addresses


async def resolve_target(
    target: Target,
    *,
    allow_private: bool,
    resolve_seconds: float,
    resolver: Resolver = system_resolver,
) -> list[IPAddress]:
    """The addresses to connect to for ``target``, every one of them checked.

    Raises UnsafeTargetError when any address is refused (then nothing may be called), and
    ResolutionError when the name does not resolve within ``resolve_seconds``.
    """
    if target.literal is not None:
        addresses = [target.literal]
    else:
        try:
            async with asyncio.timeout(resolve_seconds):
                addresses = await resolver(target.host, target.port)
        except TimeoutError as exc:
            raise ResolutionError(
                f"{target.host} did not resolve within {resolve_seconds:g} s"
            ) from exc
        if not addresses:
            raise ResolutionError(f"{target.host} has no addresses")
    if not allow_private:
        for address in addresses:
            reason = refusal_reason(address)
            if reason is not None:
                shown = target.host_header_name
                raise UnsafeTargetError(
                    f"{shown} is a {reason}"
                    if target.literal is not None
                    else f"{shown} resolves to {address}, a {reason}"
                )
    return addresses
