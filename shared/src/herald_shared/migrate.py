"""Applying and inspecting the schema migrations (Alembic, scripts in ``migrations/``).

Migrations are expand/contract (decision 0020): a schema one release ahead still serves the
code of the release before, so a process is ready at its own head or at a revision newer than
any it knows, and unready on an older one. ``upgrade`` runs under a PostgreSQL advisory lock, so
runners started together (one per new pod) apply each migration once, one after the other.
"""

from __future__ import annotations

import asyncio
import functools
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


#: The advisory lock ``upgrade`` holds for its whole run (any 64-bit key unique to Herald).
MIGRATION_LOCK_KEY = 0x4845_5241_4C44_4D49  # "HERALDMI"


def _scripts() -> ScriptDirectory:
    return ScriptDirectory.from_config(alembic_config("postgresql://"))


def head_revision() -> str:
    """The newest revision the code knows."""
    head = _scripts().get_current_head()
    assert head is not None
    return head


@functools.cache
def known_revisions() -> frozenset[str]:
    """Every revision the code knows, its head included."""
    return frozenset(script.revision for script in _scripts().walk_revisions())


def schema_readiness(revision: str | None, head: str) -> str:
    """``"ok"`` when this code can serve a database at ``revision``, else the reason it cannot.

    The head is ok; so is a revision the code does not know, which only a newer release's
    migration writes (expand/contract keeps such a schema compatible). A known revision older
    than the head lacks something this code uses. ``head`` is ``head_revision()``.
    """
    if revision is None:
        return f"not migrated, expected {head}"
    if revision == head or revision not in known_revisions():
        return "ok"
    return f"at {revision}, older than {head}"


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
