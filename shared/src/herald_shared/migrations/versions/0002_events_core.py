"""Events core: outbox retry bookkeeping, periodic job runs, dead-letter audit.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22
"""

from collections.abc import Sequence

from herald_shared.migrations.sql import execute_script

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_UPGRADE = """
        ALTER TABLE outbox
            ADD COLUMN next_attempt_at timestamptz NOT NULL DEFAULT now(),
            ADD COLUMN last_error text;

        CREATE TABLE periodic_jobs (
            name              text PRIMARY KEY,
            last_started_at   timestamptz NOT NULL,
            last_finished_at  timestamptz,
            runs              bigint NOT NULL DEFAULT 0,
            last_result       text
        );

        CREATE TABLE dead_letter_audit (
            id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            action      text NOT NULL CHECK (action IN ('replay', 'purge')),
            queue       text NOT NULL,
            actor       text NOT NULL,
            event_ids   uuid[] NOT NULL,
            created_at  timestamptz NOT NULL DEFAULT now()
        );
        CREATE INDEX dead_letter_audit_created_idx ON dead_letter_audit (created_at)
"""

_DOWNGRADE = """
        DROP TABLE dead_letter_audit;
        DROP TABLE periodic_jobs;
        ALTER TABLE outbox DROP COLUMN last_error, DROP COLUMN next_attempt_at
"""


def upgrade() -> None:
    execute_script(_UPGRADE)


def downgrade() -> None:
    execute_script(_DOWNGRADE)
