"""An index for deleting finished webhook deliveries after their retention period.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-22
"""

from collections.abc import Sequence

from herald_shared.migrations.sql import execute_script

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    execute_script(
        "CREATE INDEX webhook_deliveries_finished_idx ON webhook_deliveries (updated_at) "
        "WHERE status <> 'pending'"
    )


def downgrade() -> None:
    execute_script("DROP INDEX webhook_deliveries_finished_idx")
