"""The ``herald-api`` command. Before anything imports prometheus_client, it points every
server process at one shared directory for multi-process metrics, so ``/metrics`` on any
process reports the whole API."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path


def main() -> None:
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if directory is None:
        directory = tempfile.mkdtemp(prefix="herald-api-metrics-")
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = directory
    else:
        # Files of an earlier run would be counted again.
        shutil.rmtree(directory, ignore_errors=True)
        Path(directory).mkdir(parents=True, exist_ok=True)
    from herald_api.main import main as serve

    serve()
