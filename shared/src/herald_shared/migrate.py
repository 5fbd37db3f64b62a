"""Applying and inspecting the schema migrations (Alembic, scripts in ``migrations/``)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory

from herald_shared.db import Connection

_SCRIPTS = Path(__file__).parent / "migrations"


def sqlalchemy_url(dsn: str) -> str:
    """The DSN in SQLAlchemy's form, driven by asyncpg."""
    scheme, _, rest = dsn.partition("://")
    if scheme not in ("postgres", "postgresql"):
        raise ValueError(f"not a PostgreSQL DSN: scheme {scheme!r}")
    return f"postgresql+asyncpg://{rest}"


def alembic_config(dsn: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(_SCRIPTS))
    config.attributes["dsn"] = dsn
    return config


def head_revision() -> str:
    """The newest revision the code knows."""
    head = ScriptDirectory.from_config(alembic_config("postgresql://")).get_current_head()
    assert head is not None
    return head


def _upgrade(dsn: str, revision: str) -> None:
    command.upgrade(alembic_config(dsn), revision)


async def upgrade(dsn: str, revision: str = "head") -> None:
    """Migrate the database to ``revision``. Alembic's env runs its own loop, so use a thread."""
    await asyncio.to_thread(_upgrade, dsn, revision)


async def current_revision(conn: Connection) -> str | None:
    """The revision the database is at, or None before the first migration."""
    exists = await conn.fetchval("SELECT to_regclass('alembic_version') IS NOT NULL")
    if not exists:
        return None
    revision: str | None = await conn.fetchval("SELECT version_num FROM alembic_version")
    return revision
