"""Worker tasks: post enrichment and full-text search, webhooks and their deliveries, stats.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-22
"""

from collections.abc import Sequence

from herald_shared.migrations.sql import execute_script

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_UPGRADE = """
        ALTER TABLE posts
            ADD COLUMN excerpt               text,
            ADD COLUMN word_count            integer,
            ADD COLUMN reading_time_seconds  integer,
            ADD COLUMN search_vector         tsvector,
            ADD COLUMN enriched_at           timestamptz,
            ADD COLUMN enriched_version      integer;
        CREATE INDEX posts_search_idx ON posts USING gin (search_vector);

        CREATE TABLE webhooks (
            id                    uuid PRIMARY KEY,
            account_id            uuid NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
            url                   text NOT NULL,
            event_types           text[] NOT NULL,
            description           text NOT NULL DEFAULT '',
            secret                text NOT NULL,
            enabled               boolean NOT NULL DEFAULT true,
            disabled_reason       text,
            consecutive_failures  integer NOT NULL DEFAULT 0,
            failing_since         timestamptz,
            created_at            timestamptz NOT NULL DEFAULT now(),
            updated_at            timestamptz NOT NULL DEFAULT now()
        );
        CREATE INDEX webhooks_account_created_idx
            ON webhooks (account_id, created_at DESC, id DESC);

        CREATE TABLE webhook_deliveries (
            id                uuid PRIMARY KEY,
            webhook_id        uuid NOT NULL REFERENCES webhooks (id) ON DELETE CASCADE,
            event_id          uuid NOT NULL,
            event_type        text NOT NULL,
            payload           jsonb NOT NULL,
            status            text NOT NULL DEFAULT 'pending'
                CHECK (status IN ('pending', 'succeeded', 'dead', 'cancelled')),
            attempts          integer NOT NULL DEFAULT 0,
            last_status_code  integer,
            last_error        text,
            last_latency_ms   integer,
            next_attempt_at   timestamptz NOT NULL DEFAULT now(),
            created_at        timestamptz NOT NULL DEFAULT now(),
            updated_at        timestamptz NOT NULL DEFAULT now(),
            UNIQUE (webhook_id, event_id)
        );
        CREATE INDEX webhook_deliveries_due_idx ON webhook_deliveries (next_attempt_at)
            WHERE status = 'pending';
        CREATE INDEX webhook_deliveries_log_idx
            ON webhook_deliveries (webhook_id, created_at DESC, id DESC);

        CREATE TABLE account_stats (
            account_id       uuid PRIMARY KEY REFERENCES accounts (id) ON DELETE CASCADE,
            draft_posts      bigint NOT NULL DEFAULT 0,
            published_posts  bigint NOT NULL DEFAULT 0,
            total_words      bigint NOT NULL DEFAULT 0,
            updated_at       timestamptz NOT NULL DEFAULT now()
        );

        -- What the stats handler last counted for each post, so an update adjusts by the difference
        -- and a delete removes exactly what was added.
        CREATE TABLE post_stats_contributions (
            post_id     uuid PRIMARY KEY,
            account_id  uuid NOT NULL,
            status      text NOT NULL,
            words       integer NOT NULL,
            version     integer NOT NULL
        )
"""

_DOWNGRADE = """
        DROP TABLE post_stats_contributions;
        DROP TABLE account_stats;
        DROP TABLE webhook_deliveries;
        DROP TABLE webhooks;
        DROP INDEX posts_search_idx;
        ALTER TABLE posts
            DROP COLUMN enriched_version, DROP COLUMN enriched_at, DROP COLUMN search_vector,
            DROP COLUMN reading_time_seconds, DROP COLUMN word_count, DROP COLUMN excerpt
"""


def upgrade() -> None:
    execute_script(_UPGRADE)


def downgrade() -> None:
    execute_script(_DOWNGRADE)
