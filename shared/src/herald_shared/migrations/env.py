"""Alembic environment: runs the migrations over asyncpg through SQLAlchemy's async engine."""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy import Connection, pool
from sqlalchemy.ext.asyncio import create_async_engine

from herald_shared.migrate import MIGRATION_LOCK_KEY, sqlalchemy_url


def _run(connection: Connection) -> None:
    # Runners started together wait here for each other; the next one finds the work done.
    # A session lock: it outlives the commit below (which leaves alembic free to run a
    # transaction per migration) and goes with the connection.
    connection.exec_driver_sql(f"SELECT pg_advisory_lock({MIGRATION_LOCK_KEY})")
    connection.commit()
    context.configure(connection=connection, transaction_per_migration=True)
    with context.begin_transaction():
        context.run_migrations()


async def _run_online() -> None:
    dsn = context.config.attributes["dsn"]
    engine = create_async_engine(sqlalchemy_url(dsn), poolclass=pool.NullPool)
    try:
        async with engine.connect() as connection:
            await connection.run_sync(_run)
            await connection.commit()
    finally:
        await engine.dispose()


if context.is_offline_mode():
    context.configure(url=sqlalchemy_url(context.config.attributes["dsn"]), literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()
else:
    asyncio.run(_run_online())
