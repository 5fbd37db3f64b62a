#!/bin/sh
# The streaming read replica: on first start, copy the primary with pg_basebackup (which also
# writes standby.signal and the connection to follow); then run PostgreSQL as a hot standby.
set -eu
if [ ! -s "$PGDATA/PG_VERSION" ]; then
  until pg_isready -h postgres-primary -p 5432 -q; do sleep 1; done
  PGPASSWORD=$REPLICATION_PASSWORD pg_basebackup -h postgres-primary -p 5432 -U replicator \
    -D "$PGDATA" --write-recovery-conf --wal-method=stream --checkpoint=fast \
    --create-slot --slot=replica
  chmod 0700 "$PGDATA"
fi
exec postgres -c hot_standby=on
