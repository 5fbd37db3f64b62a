"""Production refuses placeholder secrets and accepts generated ones."""

from __future__ import annotations

import base64
import os
import secrets

import pytest
from pydantic import ValidationError

from herald_shared.secret_strength import secret_weakness
from herald_shared.settings import DEV_CURSOR_SECRET, Environment, SecuritySettings

PLACEHOLDERS = [
    DEV_CURSOR_SECRET,
    "replace-with-64-random-characters",
    "change-me-to-a-long-random-value-in-production",
    "ReplaceWithRandomValueReplaceWithRandomValue",
    "x" * 64,
    "0123456789abcdef" * 4,  # hex of the right length, but a pattern
    "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo",  # base64 of the alphabet: 26 bytes
    "abcdefghijklmnopqrstuvwxyzabcdefghijklmnopq",  # base64 alphabet, one case only
    "a random value of at least thirty two characters",
]


def generated() -> list[str]:
    return [
        secrets.token_hex(32),
        secrets.token_urlsafe(32),
        base64.b64encode(os.urandom(32)).decode(),
        base64.b64encode(os.urandom(32)).decode().rstrip("="),
        secrets.token_hex(64).upper(),
    ]


@pytest.mark.parametrize("placeholder", PLACEHOLDERS)
def test_placeholders_are_refused_in_production(placeholder: str) -> None:
    assert secret_weakness(placeholder) is not None
    with pytest.raises(ValidationError, match="HERALD_CURSOR_SECRET"):
        SecuritySettings(env=Environment.PRODUCTION, cursor_secret=placeholder)


def test_generated_secrets_are_accepted_in_production() -> None:
    for _ in range(200):
        for secret in generated():
            assert secret_weakness(secret) is None, secret
            SecuritySettings(env=Environment.PRODUCTION, cursor_secret=secret)


def test_the_refusal_says_why_without_echoing_the_secret() -> None:
    with pytest.raises(ValidationError) as refused:
        SecuritySettings(env=Environment.PRODUCTION, cursor_secret="replace-with-64-random-chars")
    assert "contains 'replace'" in str(refused.value)
    assert "replace-with-64-random-chars" not in str(refused.value)


def test_development_keeps_its_default() -> None:
    assert SecuritySettings().cursor_secret.get_secret_value() == DEV_CURSOR_SECRET
