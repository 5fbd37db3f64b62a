"""The chaos table of docs/reliability.md: one row per ledger report, failures marked."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.chaos.report import BEGIN, END, render, update

REPORT = {
    "scenario": "redis killed",
    "writes_attempted": 120,
    "writes_accepted": 118,
    "writes_unknown": 0,
    "events_lost": 0,
    "duplicate_effects": 0,
    "duplicate_deliveries": 2,
    "statuses": {"200": 250, "503": 3},
    "recovery_seconds": 1.94,
    "dead_letters": {"worker": 0, "cache-invalidator": 1},
    "notes": ["breaker opened 0.3 s after the kill"],
}
DOCUMENT = {
    "finished_at": "2026-12-06T08:00:00Z",
    "soak": False,
    "load": {"clients": 4, "rate": 24.0, "write_share": 0.5},
    "phase_seconds": 3.0,
    "servers": ["private servers up in 4.0 s"],
    "scenarios": {
        "tests/chaos/test_redis_faults.py::test_redis": {
            "outcome": "passed",
            "seconds": 25.2,
            "reports": [REPORT],
        },
        "tests/chaos/test_x.py::test_no_ledger": {
            "outcome": "failed",
            "seconds": 3.0,
            "reports": [],
        },
    },
}


def test_every_report_is_a_row_with_its_figures() -> None:
    table = render(DOCUMENT)
    row = next(line for line in table.splitlines() if line.startswith("| redis killed"))
    cells = [cell.strip() for cell in row.strip("|").split("|")]
    assert cells == [
        "redis killed",
        "25 s",
        "118 of 120",
        "0",
        "0 (+2 webhook repeats)",
        "200: 250, 503: 3",
        "1.9 s",
        "dead letters cache-invalidator: 1; breaker opened 0.3 s after the kill",
    ]


def test_a_failed_scenario_is_marked_failed() -> None:
    assert "| test_no_ledger **failed** | 3 s |" in render(DOCUMENT)


def test_the_page_section_is_replaced_and_the_rest_kept(tmp_path: Path) -> None:
    page = tmp_path / "reliability.md"
    page.write_text(f"# Reliability\n\nbefore\n{BEGIN}\nold table\n{END}\nafter\n")
    update(DOCUMENT, page)
    text = page.read_text()
    assert text.startswith("# Reliability\n\nbefore\n")
    assert text.endswith(f"{END}\nafter\n")
    assert "old table" not in text
    assert "| redis killed |" in text


def test_a_page_without_the_section_is_refused(tmp_path: Path) -> None:
    page = tmp_path / "reliability.md"
    page.write_text("# Reliability\n")
    with pytest.raises(SystemExit):
        update(DOCUMENT, page)


def test_a_scenario_without_writes_shows_none() -> None:
    document = {
        **DOCUMENT,
        "scenarios": {
            "t::poison": {
                "outcome": "passed",
                "seconds": 5.0,
                "reports": [{**REPORT, "scenario": "poison", "writes_attempted": 0}],
            }
        },
    }
    row = next(line for line in render(document).splitlines() if line.startswith("| poison"))
    assert row.split("|")[3].strip() == "-"
