"""The API's settings: its own ``HERALD_API_*`` options composed with the shared ones."""

from __future__ import annotations

from dataclasses import dataclass, field

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from herald_shared.settings import DatabaseSettings, LogSettings, SecuritySettings


class ServerSettings(BaseSettings):
    """How the API serves HTTP."""

    model_config = SettingsConfigDict(env_prefix="HERALD_API_", extra="ignore")

    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)
    processes: int = Field(default=1, ge=1, description="Server worker processes.")
    max_body_bytes: int = Field(default=1024 * 1024, ge=1024)
    graceful_shutdown_seconds: float = Field(default=10.0, ge=0)
    auth_cache_ttl_seconds: float = Field(
        default=5.0, ge=0, description="How long a verified key is trusted before re-checking."
    )
    idempotency_ttl_hours: float = Field(default=24.0, gt=0)
    public_base_url: str | None = Field(
        default=None, description="Used in Location headers when set; the request's URL otherwise."
    )


@dataclass(frozen=True, slots=True)
class Settings:
    server: ServerSettings = field(default_factory=ServerSettings)
    db: DatabaseSettings = field(default_factory=DatabaseSettings)
    security: SecuritySettings = field(default_factory=SecuritySettings)
    log: LogSettings = field(default_factory=LogSettings)
