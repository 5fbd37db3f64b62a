"""The API's ``/metrics``, off the public port: a small server of its own
(``HERALD_API_METRICS_HOST``/``HERALD_API_METRICS_PORT``, 9100 by default) run by the
``herald-api`` command beside its server processes, reporting all of them together (through
``PROMETHEUS_MULTIPROC_DIR``); and the pool gauges each server process keeps current for it.

Imported by the command only after the metrics directory is in the environment.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from wsgiref.simple_server import WSGIServer

import structlog
from prometheus_client import REGISTRY, CollectorRegistry, start_http_server
from prometheus_client.multiprocess import MultiProcessCollector

from herald_shared.background import Job
from herald_shared.db import Database
from herald_shared.metrics import DB_POOL_IN_USE, DB_POOL_SIZE

_log = structlog.get_logger(__name__)

#: How often a server process records its pools' sizes.
POOL_GAUGE_SECONDS = 2.0


def serve_metrics(host: str, port: int) -> WSGIServer | None:
    """Serve ``/metrics`` on ``host:port`` from a daemon thread; the server (its
    ``server_port`` is the one the system chose for port 0), or None when it could not listen —
    serving the API matters more than being scraped, so that is logged, loudly, and the API
    runs on."""
    if "PROMETHEUS_MULTIPROC_DIR" in os.environ:
        registry = CollectorRegistry()
        MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    else:
        registry = REGISTRY
    try:
        server, _ = start_http_server(port, addr=host, registry=registry)
    except OSError as exc:
        _log.error("metrics endpoint could not listen", host=host, port=port, error=repr(exc))
        return None
    _log.info("metrics endpoint listening", host=host, port=int(server.server_port))
    return server


def record_pool_sizes(db: Database) -> None:
    for name, pool in (("primary", db.primary), ("replica", db.replica)):
        DB_POOL_SIZE.labels(name).set(pool.get_size())
        DB_POOL_IN_USE.labels(name).set(pool.get_size() - pool.get_idle_size())


def pool_gauges(db: Database) -> Job:
    """A background job (``herald_shared.background.running``) keeping the pool gauges current."""

    async def record(stop: asyncio.Event) -> None:
        while not stop.is_set():
            record_pool_sizes(db)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(POOL_GAUGE_SECONDS):
                    await stop.wait()

    return record
