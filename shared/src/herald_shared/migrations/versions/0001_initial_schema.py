"""Initial schema: accounts, API keys, posts, outbox, idempotency keys, processed events.

Revision ID: 0001
Revises:
Create Date: 2026-11-22
"""

from collections.abc import Sequence

from herald_shared.migrations.sql import execute_script

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


_UPGRADE = """
        CREATE TABLE accounts (
            id          uuid PRIMARY KEY,
            name        text NOT NULL UNIQUE CHECK (length(name) BETWEEN 1 AND 100),
            created_at  timestamptz NOT NULL DEFAULT now()
        );

        CREATE TABLE api_keys (
            id          text PRIMARY KEY,
            account_id  uuid NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
            token_hash  bytea NOT NULL UNIQUE,
            role        text NOT NULL CHECK (role IN ('member', 'admin')),
            created_at  timestamptz NOT NULL DEFAULT now(),
            revoked_at  timestamptz
        );
        CREATE INDEX api_keys_account_idx ON api_keys (account_id);

        CREATE TABLE posts (
            id            uuid PRIMARY KEY,
            author_id     uuid NOT NULL REFERENCES accounts (id),
            title         text NOT NULL,
            body          text NOT NULL,
            tags          text[] NOT NULL DEFAULT '{}',
            status        text NOT NULL CHECK (status IN ('draft', 'published')),
            version       integer NOT NULL DEFAULT 1,
            created_at    timestamptz NOT NULL DEFAULT now(),
            updated_at    timestamptz NOT NULL DEFAULT now(),
            published_at  timestamptz
        );
        -- One index per list shape; every one ends in the keyset order (created_at, id).
        CREATE INDEX posts_created_idx ON posts (created_at DESC, id DESC);
        CREATE INDEX posts_status_created_idx ON posts (status, created_at DESC, id DESC);
        CREATE INDEX posts_author_created_idx ON posts (author_id, created_at DESC, id DESC);
        CREATE INDEX posts_author_status_created_idx
            ON posts (author_id, status, created_at DESC, id DESC);
        CREATE INDEX posts_tags_idx ON posts USING gin (tags);

        CREATE TABLE outbox (
            id                 bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            event_id           uuid NOT NULL UNIQUE,
            event_type         text NOT NULL,
            aggregate_id       uuid NOT NULL,
            aggregate_version  integer NOT NULL,
            payload            jsonb NOT NULL,
            headers            jsonb NOT NULL DEFAULT '{}',
            created_at         timestamptz NOT NULL DEFAULT now(),
            published_at       timestamptz,
            attempts           integer NOT NULL DEFAULT 0
        );
        CREATE INDEX outbox_unpublished_idx ON outbox (id) WHERE published_at IS NULL;
        CREATE INDEX outbox_published_at_idx ON outbox (published_at)
            WHERE published_at IS NOT NULL;

        CREATE TABLE idempotency_keys (
            account_id        uuid NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
            key               text NOT NULL,
            request_hash      bytea NOT NULL,
            response_status   integer NOT NULL,
            response_body     bytea NOT NULL,
            response_headers  jsonb NOT NULL DEFAULT '{}',
            created_at        timestamptz NOT NULL DEFAULT now(),
            expires_at        timestamptz NOT NULL,
            PRIMARY KEY (account_id, key)
        );
        CREATE INDEX idempotency_keys_expires_idx ON idempotency_keys (expires_at);

        CREATE TABLE processed_events (
            consumer      text NOT NULL,
            event_id      uuid NOT NULL,
            processed_at  timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (consumer, event_id)
        );
        CREATE INDEX processed_events_processed_at_idx ON processed_events (processed_at);
"""

_DOWNGRADE = """
        DROP TABLE processed_events;
        DROP TABLE idempotency_keys;
        DROP TABLE outbox;
        DROP TABLE posts;
        DROP TABLE api_keys;
        DROP TABLE accounts;
"""


def upgrade() -> None:
    execute_script(_UPGRADE)


def downgrade() -> None:
    execute_script(_DOWNGRADE)
