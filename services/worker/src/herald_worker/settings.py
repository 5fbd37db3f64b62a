"""The worker's settings: its own ``HERALD_WORKER_*`` options composed with the shared ones."""

from __future__ import annotations

from dataclasses import dataclass, field

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from herald_shared.settings import (
    AmqpSettings,
    ConsumerSettings,
    DatabaseSettings,
    LogSettings,
    RelaySettings,
    TelemetrySettings,
)
from herald_shared.webhooks.settings import WebhookSettings


class WorkerSettings(BaseSettings):
    """The worker's periodic jobs and their retention periods."""

    model_config = SettingsConfigDict(env_prefix="HERALD_WORKER_", extra="ignore")

    jobs_enabled: bool = True
    jobs_tick_seconds: float = Field(default=5.0, gt=0)
    cleanup_every_seconds: float = Field(default=3600.0, gt=0)
    outbox_retention_hours: float = Field(default=24.0, ge=0)
    inbox_retention_hours: float = Field(default=24.0 * 7, ge=0)
    delivery_retention_days: float = Field(
        default=30.0, ge=0, description="How long the webhook delivery log keeps finished rows."
    )


@dataclass(frozen=True, slots=True)
class Settings:
    worker: WorkerSettings = field(default_factory=WorkerSettings)
    consumer: ConsumerSettings = field(default_factory=ConsumerSettings)
    db: DatabaseSettings = field(default_factory=DatabaseSettings)
    amqp: AmqpSettings = field(default_factory=AmqpSettings)
    log: LogSettings = field(default_factory=LogSettings)
    relay: RelaySettings = field(default_factory=RelaySettings)
    telemetry: TelemetrySettings = field(default_factory=TelemetrySettings)
    webhooks: WebhookSettings = field(default_factory=WebhookSettings)
