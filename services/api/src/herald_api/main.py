"""The ``herald-api`` command (``python -m herald_api`` too): serve the API with uvicorn.

This module imports nothing that imports ``prometheus_client``: the metrics directory must be in
the environment before any server process creates a metric, so that ``/metrics`` reports every
process of the API. ``/metrics`` is served by this process on a port of its own
(``herald_api.metrics_endpoint``), not by the app. The app itself is built by ``herald_api.app``
in each server process.
"""

from __future__ import annotations

import os
import shutil
import signal
import sys
import tempfile
from pathlib import Path
from types import FrameType

import uvicorn

from herald_api.settings import Settings
from herald_shared.logs import configure_logging

APP_FACTORY = "herald_api.app:create_server_app"


def prepare_metrics_directory() -> None:
    """Point every server process at one empty directory for multi-process metrics."""
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if directory is None:
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="herald-api-metrics-")
    else:
        # Files of an earlier run would be counted again.
        shutil.rmtree(directory, ignore_errors=True)
        Path(directory).mkdir(parents=True, exist_ok=True)


def _exit_cleanly(signum: int, frame: FrameType | None) -> None:
    sys.exit(0)


def main() -> None:
    prepare_metrics_directory()
    settings = Settings()
    configure_logging("herald-api", settings.log)
    server = settings.server
    # uvicorn drains, then re-raises the signal it caught under the handler that was there
    # before it started: make that handler a clean exit, so a graceful stop exits 0.
    signal.signal(signal.SIGTERM, _exit_cleanly)
    # Imported only now: the metrics directory is in the environment.
    from herald_api.metrics_endpoint import serve_metrics

    serve_metrics(server.metrics_host or server.host, server.metrics_port)
    uvicorn.run(
        APP_FACTORY,
        factory=True,
        host=server.host,
        port=server.port,
        workers=server.processes,
        loop="uvloop",
        http="httptools",
        lifespan="on",
        access_log=False,
        log_config=None,
        timeout_graceful_shutdown=int(server.graceful_shutdown_seconds),
        proxy_headers=False,
    )
