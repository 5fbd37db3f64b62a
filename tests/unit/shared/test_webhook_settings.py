"""Webhook settings: environment variables and the limits that must hold between them."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from herald_shared.webhooks.settings import WebhookSettings


def test_defaults_are_safe_for_production() -> None:
    settings = WebhookSettings()
    assert (settings.allow_http, settings.allow_private) == (False, False)
    assert settings.backoff_seconds[0] == 30
    assert settings.backoff_seconds[-1] == 8 * 3600
    assert settings.max_response_bytes == 64 * 1024
    assert settings.disable_after_failing_seconds == 5 * 24 * 3600


def test_read_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HERALD_WEBHOOKS_ALLOW_PRIVATE", "true")
    monkeypatch.setenv("HERALD_WEBHOOKS_BACKOFF_SECONDS", "[0.1, 0.2]")
    settings = WebhookSettings()
    assert settings.allow_private is True
    assert settings.backoff_seconds == [0.1, 0.2]


@pytest.mark.parametrize(
    "values",
    [
        {"lease_seconds": 5.0},  # shorter than resolve + connect + read (9 s)
        {"per_host_concurrency": 8, "concurrency": 4},
        {"backoff_seconds": []},
        {"backoff_seconds": [1.0, -1.0]},
        {"max_attempts": 0},
    ],
)
def test_inconsistent_limits_are_refused(values: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        WebhookSettings(**values)  # type: ignore[arg-type]
