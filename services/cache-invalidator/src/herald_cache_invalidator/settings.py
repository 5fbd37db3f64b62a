"""The cache-invalidator's settings, composed from the shared ones."""

from __future__ import annotations

from dataclasses import dataclass, field

from herald_shared.settings import (
    AmqpSettings,
    CacheSettings,
    ConsumerSettings,
    LogSettings,
    RedisSettings,
    TelemetrySettings,
)


@dataclass(frozen=True, slots=True)
class Settings:
    consumer: ConsumerSettings = field(default_factory=ConsumerSettings)
    amqp: AmqpSettings = field(default_factory=AmqpSettings)
    redis: RedisSettings = field(default_factory=RedisSettings)
    cache: CacheSettings = field(default_factory=CacheSettings)
    log: LogSettings = field(default_factory=LogSettings)
    telemetry: TelemetrySettings = field(default_factory=TelemetrySettings)
