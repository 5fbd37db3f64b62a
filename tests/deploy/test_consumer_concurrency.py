"""The concurrency probe docs/operations.md quotes still runs: a short run at two levels."""

from __future__ import annotations

import subprocess
import sys

from tests.deploy.rendered import ROOT


def test_the_probe_reports_a_rate_per_concurrency() -> None:
    result = subprocess.run(
        [
            sys.executable,
            str(ROOT / "deploy" / "local" / "consumer_concurrency.py"),
            *("--concurrency", "1", "4", "--io-ms", "5", "--seconds", "0.2"),
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    rows = [line.split() for line in result.stdout.splitlines()[2:]]
    assert [row[0] for row in rows] == ["1", "4"]
    assert all(float(row[2]) > 0 for row in rows)
