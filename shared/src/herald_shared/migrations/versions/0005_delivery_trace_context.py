"""Webhook deliveries carry the trace context of the event that caused them.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-22
"""

from collections.abc import Sequence

from herald_shared.migrations.sql import execute_script

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    execute_script(
        "ALTER TABLE webhook_deliveries ADD COLUMN trace_headers jsonb NOT NULL DEFAULT '{}'"
    )


def downgrade() -> None:
    execute_script("ALTER TABLE webhook_deliveries DROP COLUMN trace_headers")
