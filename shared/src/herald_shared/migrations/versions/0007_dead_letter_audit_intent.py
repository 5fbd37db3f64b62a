"""Dead-letter audit written before the action: every message id, and whether the action
completed.

Each row is one batch of a replay or purge, written (``started``) before its messages are moved
or deleted and completed (``completed`` or ``failed``) after; a row left ``started`` is a batch
whose command was cut short: its messages may or may not have been acted on. ``message_ids``
holds every message's id as it was (a message without one has ``''``); ``event_ids`` the ones
that are event ids (UUIDs). Rows written before this revision are taken as completed; the
defaults keep an earlier version's ``herald dlq`` (which audits after acting) writing rows.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-06
"""

from collections.abc import Sequence

from herald_shared.migrations.sql import execute_script

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_UPGRADE = """
        ALTER TABLE dead_letter_audit
            ADD COLUMN message_ids text[] NOT NULL DEFAULT '{}',
            ADD COLUMN status text NOT NULL DEFAULT 'completed'
                CHECK (status IN ('started', 'completed', 'failed')),
            ADD COLUMN completed_at timestamptz,
            ADD COLUMN error text;
        UPDATE dead_letter_audit SET message_ids = event_ids::text[], completed_at = created_at;
        CREATE INDEX dead_letter_audit_unfinished_idx ON dead_letter_audit (created_at)
            WHERE status = 'started'
"""

_DOWNGRADE = """
        DROP INDEX dead_letter_audit_unfinished_idx;
        ALTER TABLE dead_letter_audit
            DROP COLUMN error,
            DROP COLUMN completed_at,
            DROP COLUMN status,
            DROP COLUMN message_ids
"""


def upgrade() -> None:
    execute_script(_UPGRADE)


def downgrade() -> None:
    execute_script(_DOWNGRADE)
