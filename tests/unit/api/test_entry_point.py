"""The ``herald-api`` command prepares the multi-process metrics directory before any server
process can create a metric."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from herald_api.main import prepare_metrics_directory


def test_the_command_module_does_not_import_prometheus_client() -> None:
    # In a fresh interpreter: this test process has imported everything already.
    check = "import sys, herald_api.main; print('prometheus_client' in sys.modules)"
    result = subprocess.run(
        [sys.executable, "-c", check], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "False"


def test_a_given_metrics_directory_is_emptied(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    directory = tmp_path / "metrics"
    directory.mkdir()
    (directory / "counter_123.db").write_bytes(b"from an earlier run")
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(directory))
    prepare_metrics_directory()
    assert directory.is_dir()
    assert list(directory.iterdir()) == []


def test_without_one_a_fresh_directory_is_made(monkeypatch: pytest.MonkeyPatch) -> None:
    # Set, then removed: so the variable the command sets is undone after the test too.
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", "unset by the test")
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR")
    prepare_metrics_directory()
    directory = Path(os.environ["PROMETHEUS_MULTIPROC_DIR"])
    try:
        assert directory.is_dir()
        assert list(directory.iterdir()) == []
    finally:
        directory.rmdir()
