"""A webhook's previous signing secret, kept for an overlap after a rotation.

After ``rotate-secret`` deliveries are signed with both the new and the previous secret until
``previous_secret_expires_at`` (Standard Webhooks allows several signatures in one header), so
a receiver can switch to the new secret without refusing a delivery meanwhile. Stored like
``secret``; both columns are null when there is no overlap, and are cleared once it is over.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-06
"""

from collections.abc import Sequence

from herald_shared.migrations.sql import execute_script

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_UPGRADE = """
        ALTER TABLE webhooks
            ADD COLUMN previous_secret text,
            ADD COLUMN previous_secret_expires_at timestamptz,
            ADD CONSTRAINT webhooks_previous_secret_expiry CHECK (
                (previous_secret IS NULL) = (previous_secret_expires_at IS NULL)
            );
        CREATE INDEX webhooks_previous_secret_expiry_idx ON webhooks (previous_secret_expires_at)
            WHERE previous_secret_expires_at IS NOT NULL
"""

_DOWNGRADE = """
        DROP INDEX webhooks_previous_secret_expiry_idx;
        ALTER TABLE webhooks
            DROP CONSTRAINT webhooks_previous_secret_expiry,
            DROP COLUMN previous_secret_expires_at,
            DROP COLUMN previous_secret
"""


def upgrade() -> None:
    execute_script(_UPGRADE)


def downgrade() -> None:
    execute_script(_DOWNGRADE)
