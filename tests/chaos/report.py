"""Turn a chaos run's figures (``HERALD_CHAOS_REPORT=<json>``) into the table of
docs/reliability.md, between its ``<!-- chaos:begin -->`` and ``<!-- chaos:end -->`` lines.

    python -m tests.chaos.report var/chaos/latest.json docs/reliability.md

``make test-chaos`` runs the long form of the suite and then this; the figures are the last
run's, as measured, passed or not (a failed scenario is shown as failed).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

BEGIN, END = "<!-- chaos:begin -->", "<!-- chaos:end -->"


def _revision() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True
        )
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return out.stdout.strip()


def _statuses(statuses: dict[str, int]) -> str:
    return ", ".join(f"{code}: {n}" for code, n in sorted(statuses.items())) or "-"


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f} s"


def _row(test: str, scenario: dict[str, Any], report: dict[str, Any] | None) -> str:
    name = report["scenario"] if report else test.rsplit("::", 1)[-1]
    outcome = "" if scenario["outcome"] == "passed" else f" **{scenario['outcome']}**"
    if report is None:
        cells = ["-"] * 6
    else:
        dead = {k: v for k, v in report["dead_letters"].items() if v}
        cells = [
            (
                f"{report['writes_accepted']} of {report['writes_attempted']}"
                + (f" ({report['writes_unknown']} unknown)" if report["writes_unknown"] else "")
                if report["writes_attempted"]
                else "-"
            ),
            str(report["events_lost"]),
            str(report["duplicate_effects"])
            + (
                f" (+{report['duplicate_deliveries']} webhook repeats)"
                if report["duplicate_deliveries"]
                else ""
            ),
            _statuses(report["statuses"]),
            _seconds(report["recovery_seconds"]),
            "; ".join([*(f"dead letters {k}: {v}" for k, v in dead.items()), *report["notes"]])
            or "-",
        ]
    return "| " + " | ".join([f"{name}{outcome}", f"{scenario['seconds']:.0f} s", *cells]) + " |"


def render(document: dict[str, Any]) -> str:
    load = document["load"]
    lines = [
        f"Last run: {document['finished_at']}, revision `{_revision()}`, "
        f"{'the long form (`make test-chaos`)' if document['soak'] else 'the CI-sized form'}; "
        f"load {load['clients']} clients at {load['rate']:g} requests/s in all, "
        f"{load['write_share']:.0%} writes, {document['phase_seconds']:g} s per phase. "
        + " ".join(document["servers"]),
        "",
        "| scenario | took | writes accepted | events lost | duplicate effects "
        "| responses by status | recovery | notes |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for test, scenario in document["scenarios"].items():
        reports = scenario["reports"] or [None]
        lines += [_row(test, scenario, report) for report in reports]
    return "\n".join(lines)


def update(document: dict[str, Any], page: Path) -> None:
    text = page.read_text()
    pattern = re.compile(re.escape(BEGIN) + r".*?" + re.escape(END), re.S)
    if not pattern.search(text):
        raise SystemExit(f"{page} has no {BEGIN} … {END} section")
    page.write_text(pattern.sub(lambda _: f"{BEGIN}\n{render(document)}\n{END}", text))


def main(argv: list[str]) -> None:
    if len(argv) != 2:
        raise SystemExit("usage: python -m tests.chaos.report REPORT.json PAGE.md")
    update(json.loads(Path(argv[0]).read_text()), Path(argv[1]))


if __name__ == "__main__":
    main(sys.argv[1:])
