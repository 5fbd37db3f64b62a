"""The alerting rules in deploy/ are valid Prometheus rules, name metrics Herald exports, pass
their unit tests (every alert fires on its test series), and link their runbook section."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import yaml
from prometheus_client.metrics import MetricWrapperBase

from herald_shared import metrics

ROOT = Path(__file__).resolve().parents[3]
RULES = ROOT / "deploy" / "prometheus" / "alerts.yml"
RULE_TESTS = ROOT / "deploy" / "prometheus" / "alerts.test.yml"
OPERATIONS = ROOT / "docs" / "operations.md"


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    found = shutil.which("promtool")
    assert found, "promtool is missing: make tools installs it (deploy/local/ensure-tools.sh)"
    return subprocess.run([found, *args], capture_output=True, text=True, check=False)


def alerts() -> list[dict[str, object]]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"]]


def test_promtool_accepts_the_rules() -> None:
    result = promtool("check", "rules", str(RULES))
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_rules_pass_their_unit_tests() -> None:
    result = promtool("test", "rules", str(RULE_TESTS))
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_is_shown_firing_by_a_unit_test() -> None:
    tests = yaml.safe_load(RULE_TESTS.read_text())["tests"]
    firing = {
        case["alertname"]
        for test in tests
        for case in test["alert_rule_test"]
        if case["exp_alerts"]
    }
    assert firing == {rule["alert"] for rule in alerts()}


def github_anchors(markdown: str) -> set[str]:
    """The anchors GitHub gives the document's headings."""
    headings = re.findall(r"^#+ (.+)$", markdown, re.M)
    return {re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-") for heading in headings}


def test_every_alert_links_its_runbook_section() -> None:
    anchors = github_anchors(OPERATIONS.read_text())
    for rule in alerts():
        annotations = rule["annotations"]
        assert isinstance(annotations, dict)
        url = annotations["runbook_url"]
        assert url == f"docs/operations.md#{str(rule['alert']).lower()}"
        assert url.partition("#")[2] in anchors, f"no section for {rule['alert']}"


def test_every_metric_the_rules_use_is_exported() -> None:
    exported = {
        value._name for value in vars(metrics).values() if isinstance(value, MetricWrapperBase)
    }
    used = set(re.findall(r"\b(herald_[a-z_]+)", RULES.read_text()))
    # Counters are exposed with a _total suffix.
    missing = {u for u in used if u.removesuffix("_total") not in exported}
    assert not missing, f"rules use metrics nobody exports: {sorted(missing)}"
