"""Typed settings for each backing service, read from ``HERALD_*`` environment variables.

Each class owns one prefix. Services compose the classes they need into their own settings
object, constructed once in ``main`` and passed down; nothing here is read at import time.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Self

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEV_CURSOR_SECRET = "dev-only-cursor-secret-change-me"  # noqa: S105 - refused in production


class Environment(StrEnum):
    DEVELOPMENT = "development"
    TEST = "test"
    PRODUCTION = "production"


class DatabaseSettings(BaseSettings):
    """PostgreSQL: the primary, an optional read replica and the pool's limits."""

    model_config = SettingsConfigDict(env_prefix="HERALD_DB_", extra="ignore")

    dsn: str = "postgresql://herald:herald@127.0.0.1:5432/herald"
    replica_dsn: str | None = Field(
        default=None, description="Read-only replica used for reads; the primary when unset."
    )
    pool_min_size: int = Field(default=2, ge=0)
    pool_max_size: int = Field(default=10, ge=1)
    acquire_timeout_seconds: float = Field(default=2.0, gt=0)
    connect_timeout_seconds: float = Field(default=5.0, gt=0)
    command_timeout_seconds: float = Field(default=10.0, gt=0)
    statement_timeout_ms: int = Field(default=5000, ge=0)
    idle_in_transaction_timeout_ms: int = Field(default=10000, ge=0)
    max_inactive_connection_lifetime_seconds: float = Field(default=300.0, ge=0)
    pgbouncer: bool = Field(
        default=False,
        description=(
            "Behind PgBouncer in transaction mode: no prepared-statement cache and no "
            "per-connection server settings (set statement_timeout on the role instead)."
        ),
    )

    @model_validator(mode="after")
    def _check_pool(self) -> Self:
        if self.pool_min_size > self.pool_max_size:
            raise ValueError("HERALD_DB_POOL_MIN_SIZE must not exceed HERALD_DB_POOL_MAX_SIZE")
        return self


class SecuritySettings(BaseSettings):
    """Secrets and environment; placeholder secrets are refused in production."""

    model_config = SettingsConfigDict(env_prefix="HERALD_", extra="ignore")

    env: Environment = Environment.DEVELOPMENT
    cursor_secret: SecretStr = SecretStr(DEV_CURSOR_SECRET)

    @model_validator(mode="after")
    def _refuse_placeholders(self) -> Self:
        if self.env is Environment.PRODUCTION:
            secret = self.cursor_secret.get_secret_value()
            if secret == DEV_CURSOR_SECRET or len(secret) < 32:
                raise ValueError(
                    "HERALD_CURSOR_SECRET must be set to a random value of at least 32 "
                    "characters in production"
                )
        return self


class LogSettings(BaseSettings):
    """Log level and format for every service."""

    model_config = SettingsConfigDict(env_prefix="HERALD_LOG_", extra="ignore")

    level: str = "INFO"
    json_format: bool = Field(default=True, alias="HERALD_LOG_JSON")
