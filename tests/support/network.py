"""Loopback addresses for servers that tests start: a free port, a DSN pointing at another one."""

from __future__ import annotations

import socket
from collections.abc import Sequence
from urllib.parse import urlsplit, urlunsplit


def port_is_free(port: int) -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def free_port(*, offsets: Sequence[int] = (), avoid: Sequence[int] = ()) -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now (the caller binds it soon after).

    With ``offsets``, ``port + offset`` is free too (a Redis Cluster node also listens on its
    port + 10000). Ports in ``avoid`` are never returned.
    """
    for _ in range(200):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind(("127.0.0.1", 0))
            port: int = sock.getsockname()[1]
        candidates = [port + offset for offset in offsets]
        if port in avoid or any(p > 65535 or p in avoid for p in candidates):
            continue
        if all(port_is_free(p) for p in candidates):
            return port
    raise RuntimeError("no free loopback port found")


def with_port(dsn: str, port: int) -> str:
    """``dsn`` (a postgresql:// URL on 127.0.0.1) pointing at another local port."""
    parts = urlsplit(dsn)
    netloc = parts.netloc.rsplit("@", 1)
    host = f"127.0.0.1:{port}"
    return urlunsplit(parts._replace(netloc=f"{netloc[0]}@{host}" if len(netloc) == 2 else host))
