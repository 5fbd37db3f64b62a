#!/bin/sh
# Runs once, when the primary's data directory is created (docker-entrypoint-initdb.d): a role
# for the streaming replica, and the timeouts PgBouncer's transaction pooling cannot set per
# connection (HERALD_DB_PGBOUNCER=true turns Herald's own off).
set -eu
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" <<SQL
CREATE ROLE replicator WITH REPLICATION LOGIN PASSWORD '$REPLICATION_PASSWORD';
ALTER ROLE "$POSTGRES_USER" SET statement_timeout = '5s';
ALTER ROLE "$POSTGRES_USER" SET lock_timeout = '1s';
ALTER ROLE "$POSTGRES_USER" SET idle_in_transaction_session_timeout = '10s';
SQL
echo "host replication replicator all scram-sha-256" >> "$PGDATA/pg_hba.conf"
