"""Pooled connections are released without a reset query (``herald_shared.db``), so no SQL in
Herald may leave session state behind: session advisory locks, LISTEN, session SET or held
cursors would leak into the next borrower."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
#: The migration runner holds a session advisory lock on a connection of its own, never pooled
#: and closed when it finishes (decision 0020).
UNPOOLED = {ROOT / "shared/src/herald_shared/migrations/env.py"}
SOURCES = sorted(
    path
    for folder in ("shared/src", "services", "cli/src")
    for path in (ROOT / folder).rglob("*.py")
    if path not in UNPOOLED
)
SESSION_STATE = {
    "session advisory lock": re.compile(r"pg_(try_)?advisory_lock(_shared)?\s*\(", re.I),
    "LISTEN": re.compile(r"\bLISTEN\s+[a-z_\"]|\badd_listener\("),
    # A statement that is a SET (not SET LOCAL), or SET SESSION anywhere (SQL is upper case here).
    "session SET": re.compile(r"[\"']\s*SET\s+(?!LOCAL\b)|\bSET\s+SESSION\b"),
    "set_config for the session": re.compile(r"set_config\([^)]*,\s*false\s*\)", re.I),
    "held cursor": re.compile(r"\bWITH\s+HOLD\b", re.I),
}


def test_sources_are_found() -> None:
    assert len(SOURCES) > 50


@pytest.mark.parametrize("name", sorted(SESSION_STATE))
def test_no_sql_leaves_session_state(name: str) -> None:
    pattern = SESSION_STATE[name]
    hits = [
        f"{path.relative_to(ROOT)}:{number}: {line.strip()}"
        for path in SOURCES
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if pattern.search(line)
    ]
    assert hits == []


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT pg_advisory_lock(1)",
        "conn.execute('SET statement_timeout = 0')",
        "SET SESSION search_path TO x",
        "LISTEN posts",
        "DECLARE c CURSOR WITH HOLD FOR SELECT 1",
    ],
)
def test_the_patterns_catch_session_state(sql: str) -> None:
    assert any(pattern.search(sql) for pattern in SESSION_STATE.values())


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT pg_try_advisory_xact_lock(1, 2)",
        "conn.execute('SET LOCAL statement_timeout = 0')",
        "UPDATE posts SET title = $1",
        "ON CONFLICT (id) DO UPDATE SET version = EXCLUDED.version",
    ],
)
def test_the_patterns_pass_transaction_scoped_sql(sql: str) -> None:
    assert not any(pattern.search(sql) for pattern in SESSION_STATE.values())
