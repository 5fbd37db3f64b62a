"""SQL for accounts and their API keys, used by the API (authentication) and the CLI."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from herald_shared.apikeys import NewKey, Role, generate_key
from herald_shared.db import Connection


@dataclass(frozen=True, slots=True)
class StoredKey:
    key_id: str
    account_id: uuid.UUID
    account_name: str
    role: Role
    token_hash: bytes
    created_at: datetime
    revoked_at: datetime | None
    #: The account's rate-limit overrides; None means the configured default.
    read_limit: int | None = None
    write_limit: int | None = None


async def ensure_account(conn: Connection, name: str) -> uuid.UUID:
    """The id of the account with this name, creating it when missing."""
    row = await conn.fetchrow(
        """
        INSERT INTO accounts (id, name) VALUES ($1, $2)
        ON CONFLICT (name) DO UPDATE SET name = EXCLUDED.name
        RETURNING id
        """,
        uuid.uuid4(),
        name,
    )
    assert row is not None
    account_id: uuid.UUID = row["id"]
    return account_id


async def create_key(conn: Connection, account_name: str, role: Role) -> NewKey:
    """Create the account if needed and a new key for it; the token is returned only here."""
    async with conn.transaction():
        account_id = await ensure_account(conn, account_name)
        key = generate_key()
        await conn.execute(
            "INSERT INTO api_keys (id, account_id, token_hash, role) VALUES ($1, $2, $3, $4)",
            key.key_id,
            account_id,
            key.token_hash,
            role.value,
        )
    return key


async def revoke_key(conn: Connection, key_id: str) -> bool:
    """Revoke a key; False when no active key has this id."""
    status: str = await conn.execute(
        "UPDATE api_keys SET revoked_at = now() WHERE id = $1 AND revoked_at IS NULL", key_id
    )
    return status == "UPDATE 1"


_KEY_COLUMNS = """
    k.id, k.account_id, a.name AS account_name, k.role, k.token_hash, k.created_at, k.revoked_at,
    o.read_per_window, o.write_per_window
"""
_KEY_FROM = """
    api_keys k JOIN accounts a ON a.id = k.account_id
    LEFT JOIN rate_limit_overrides o ON o.account_id = k.account_id
"""


def _stored_key(row: asyncpg.Record) -> StoredKey:
    return StoredKey(
        key_id=row["id"],
        account_id=row["account_id"],
        account_name=row["account_name"],
        role=Role(row["role"]),
        token_hash=bytes(row["token_hash"]),
        created_at=row["created_at"],
        revoked_at=row["revoked_at"],
        read_limit=row["read_per_window"],
        write_limit=row["write_per_window"],
    )


async def find_key(conn: Connection, key_id: str) -> StoredKey | None:
    row = await conn.fetchrow(
        f"SELECT {_KEY_COLUMNS} FROM {_KEY_FROM} WHERE k.id = $1",  # noqa: S608
        key_id,
    )
    return _stored_key(row) if row else None


async def list_keys(conn: Connection) -> list[StoredKey]:
    rows = await conn.fetch(
        f"SELECT {_KEY_COLUMNS} FROM {_KEY_FROM} ORDER BY a.name, k.created_at"  # noqa: S608
    )
    return [_stored_key(row) for row in rows]


@dataclass(frozen=True, slots=True)
class LimitOverride:
    account_name: str
    read_per_window: int | None
    write_per_window: int | None


async def set_limits(
    conn: Connection, account_name: str, read: int | None, write: int | None
) -> bool:
    """Set (or with both None, clear) an account's overrides; False when no such account."""
    account_id = await conn.fetchval("SELECT id FROM accounts WHERE name = $1", account_name)
    if account_id is None:
        return False
    if read is None and write is None:
        await conn.execute("DELETE FROM rate_limit_overrides WHERE account_id = $1", account_id)
        return True
    await conn.execute(
        """
        INSERT INTO rate_limit_overrides (account_id, read_per_window, write_per_window)
        VALUES ($1, $2, $3)
        ON CONFLICT (account_id) DO UPDATE SET
            read_per_window = coalesce(
                EXCLUDED.read_per_window, rate_limit_overrides.read_per_window
            ),
            write_per_window = coalesce(
                EXCLUDED.write_per_window, rate_limit_overrides.write_per_window
            ),
            updated_at = now()
        """,
        account_id,
        read,
        write,
    )
    return True


async def list_limits(conn: Connection) -> list[LimitOverride]:
    rows = await conn.fetch(
        """
        SELECT a.name, o.read_per_window, o.write_per_window
        FROM rate_limit_overrides o JOIN accounts a ON a.id = o.account_id ORDER BY a.name
        """
    )
    return [LimitOverride(r["name"], r["read_per_window"], r["write_per_window"]) for r in rows]
