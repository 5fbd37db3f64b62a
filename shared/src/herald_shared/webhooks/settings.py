"""``HERALD_WEBHOOKS_*``: which targets may be called, how long a call may take, how deliveries
are retried, how much one destination may occupy, when a failing endpoint is disabled, and how
long a rotated secret keeps signing."""

from __future__ import annotations

from typing import Self

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

#: 30 s, 2 min, 10 min, 30 min, 1 h, 2 h, 4 h, 8 h: about 16 hours from the first to the last try.
DEFAULT_BACKOFF_SECONDS = [30.0, 120.0, 600.0, 1800.0, 3600.0, 7200.0, 14400.0, 28800.0]


class WebhookSettings(BaseSettings):
    """Webhook subscriptions and their delivery: target rules, timeouts, retries, limits."""

    model_config = SettingsConfigDict(env_prefix="HERALD_WEBHOOKS_", extra="ignore")

    allow_http: bool = Field(
        default=False, description="Accept and call plain http:// URLs (development only)."
    )
    allow_private: bool = Field(
        default=False,
        description=(
            "Accept and call loopback, private, link-local and other non-global addresses "
            "(development and tests only)."
        ),
    )
    max_per_account: int = Field(default=20, ge=1, le=1000)
    resolve_timeout_seconds: float = Field(default=2.0, gt=0)
    connect_timeout_seconds: float = Field(default=2.0, gt=0)
    read_timeout_seconds: float = Field(
        default=5.0,
        gt=0,
        description="Longest wait for the response; connect + read timeouts bound a whole call.",
    )
    max_response_bytes: int = Field(
        default=64 * 1024, ge=0, description="Read at most this much of a response body."
    )
    max_attempts: int = Field(default=8, ge=1, le=100)
    backoff_seconds: list[float] = Field(
        default=DEFAULT_BACKOFF_SECONDS,
        min_length=1,
        description="Delay after the n-th failed attempt (the last repeats); jitter is added.",
    )
    backoff_jitter: float = Field(
        default=0.2, ge=0, le=1, description="Each delay is scaled by a random 1 ± this."
    )
    breaker_failures: int = Field(
        default=5, ge=1, description="Consecutive failures that open a destination's breaker."
    )
    breaker_reset_seconds: float = Field(
        default=60.0, gt=0, description="How long a destination's breaker stays open."
    )
    concurrency: int = Field(
        default=32, ge=1, le=1000, description="Deliveries in flight per worker."
    )
    per_host_concurrency: int = Field(
        default=4, ge=1, le=1000, description="Deliveries in flight per destination per worker."
    )
    poll_interval_seconds: float = Field(
        default=0.5, gt=0, description="How often the worker looks for due deliveries."
    )
    lease_seconds: float = Field(
        default=60.0,
        gt=0,
        description=(
            "How long a claimed delivery stays hidden from other workers; after a crash it is "
            "retried once the lease runs out."
        ),
    )
    secret_overlap_seconds: float = Field(
        default=24 * 3600.0,
        ge=0,
        le=30 * 24 * 3600.0,
        description=(
            "After a secret rotation, deliveries are signed with the previous secret too for this "
            "long, so receivers can switch without refusing any; 0 stops the old one at once."
        ),
    )
    disable_after_consecutive_dead: int = Field(
        default=5, ge=1, description="Disable an endpoint after this many dead deliveries in a row."
    )
    disable_after_failing_seconds: float = Field(
        default=5 * 24 * 3600.0,
        gt=0,
        description="Disable an endpoint that has failed without a success for this long.",
    )

    @property
    def call_deadline_seconds(self) -> float:
        """The most one call may take, resolution, connection and response together."""
        return (
            self.resolve_timeout_seconds + self.connect_timeout_seconds + self.read_timeout_seconds
        )

    @model_validator(mode="after")
    def _check_limits(self) -> Self:
        if any(delay < 0 for delay in self.backoff_seconds):
            raise ValueError("HERALD_WEBHOOKS_BACKOFF_SECONDS must not hold negative delays")
        if self.per_host_concurrency > self.concurrency:
            raise ValueError(
                "HERALD_WEBHOOKS_PER_HOST_CONCURRENCY must not exceed HERALD_WEBHOOKS_CONCURRENCY"
            )
        if self.lease_seconds <= self.call_deadline_seconds:
            # A lease shorter than a call would let a second worker deliver the same row while
            # the first is still waiting for the answer.
            raise ValueError(
                "HERALD_WEBHOOKS_LEASE_SECONDS must exceed the resolve, connect and read "
                "timeouts together"
            )
        return self
