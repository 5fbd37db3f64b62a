"""The documented configuration stays true: .env.example lists every setting."""

from __future__ import annotations

from pathlib import Path

from scripts.env_example import render

ROOT = Path(__file__).resolve().parents[3]


def test_env_example_is_current() -> None:
    assert (ROOT / ".env.example").read_text() == render(), (
        ".env.example is out of date: run `make env-example`"
    )
