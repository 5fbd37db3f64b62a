"""Per-account rate-limit overrides, set by operators with ``herald limits set``.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-22
"""

from collections.abc import Sequence

from herald_shared.migrations.sql import execute_script

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_UPGRADE = """
        CREATE TABLE rate_limit_overrides (
            account_id        uuid PRIMARY KEY REFERENCES accounts (id) ON DELETE CASCADE,
            read_per_window   integer CHECK (read_per_window > 0),
            write_per_window  integer CHECK (write_per_window > 0),
            updated_at        timestamptz NOT NULL DEFAULT now()
        )
"""


def upgrade() -> None:
    execute_script(_UPGRADE)


def downgrade() -> None:
    execute_script("DROP TABLE rate_limit_overrides")
