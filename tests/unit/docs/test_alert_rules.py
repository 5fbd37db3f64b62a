"""The alerting rules in deploy/ are valid Prometheus rules and name metrics Herald exports."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
from prometheus_client.metrics import MetricWrapperBase

from herald_shared import metrics

RULES = Path(__file__).resolve().parents[3] / "deploy" / "prometheus" / "alerts.yml"


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool is not installed")
def test_promtool_accepts_the_rules() -> None:
    result = subprocess.run(
        ["promtool", "check", "rules", str(RULES)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_metric_the_rules_use_is_exported() -> None:
    exported = {
        value._name for value in vars(metrics).values() if isinstance(value, MetricWrapperBase)
    }
    used = set(re.findall(r"\b(herald_[a-z_]+)", RULES.read_text()))
    # Counters are exposed with a _total suffix.
    missing = {u for u in used if u.removesuffix("_total") not in exported}
    assert not missing, f"rules use metrics nobody exports: {sorted(missing)}"
