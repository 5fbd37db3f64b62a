#!/usr/bin/env bash
# Make sure PostgreSQL, Redis and RabbitMQ answer on their configured addresses.
# Reuses servers already running; otherwise starts installed ones; otherwise (as root on
# Debian) installs them with apt-get first. Then makes sure Herald's database role exists.
set -euo pipefail

PG_HOST=${HERALD_PG_HOST:-127.0.0.1}
PG_PORT=${HERALD_PG_PORT:-5432}
REDIS_HOST=${HERALD_REDIS_HOST:-127.0.0.1}
REDIS_PORT=${HERALD_REDIS_PORT:-6379}
AMQP_HOST=${HERALD_AMQP_HOST:-127.0.0.1}
AMQP_PORT=${HERALD_AMQP_PORT:-5672}
DB_USER=${HERALD_PG_USER:-herald}
DB_PASSWORD=${HERALD_PG_PASSWORD:-herald}
DB_NAME=${HERALD_PG_DATABASE:-herald}

log() { printf 'services: %s\n' "$*" >&2; }

listening() { # host port
  timeout 2 bash -c "exec 3<>/dev/tcp/$1/$2" 2>/dev/null
}

wait_for() { # name host port seconds
  local deadline=$((SECONDS + $4))
  until listening "$2" "$3"; do
    if ((SECONDS >= deadline)); then
      log "$1 did not come up on $2:$3 within $4 s"
      return 1
    fi
    sleep 0.5
  done
  log "$1 is up on $2:$3"
}

apt_updated=0
apt_install() {
  if [[ $(id -u) -ne 0 ]] || ! command -v apt-get >/dev/null; then
    log "cannot install $*: run as root on Debian, or install it yourself"
    return 1
  fi
  if ((apt_updated == 0)); then
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    apt_updated=1
  fi
  log "installing $*"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

ensure_postgres() {
  if ! listening "$PG_HOST" "$PG_PORT"; then
    if ! command -v pg_ctlcluster >/dev/null || [[ -z $(ls /etc/postgresql 2>/dev/null) ]]; then
      apt_install postgresql postgresql-client
    fi
    local version
    version=$(ls /etc/postgresql | sort -V | tail -n 1)
    log "starting PostgreSQL $version"
    pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
    wait_for PostgreSQL "$PG_HOST" "$PG_PORT" 60
  else
    log "PostgreSQL already listening on $PG_HOST:$PG_PORT"
  fi
  command -v psql >/dev/null || apt_install postgresql-client
  ensure_role
}

superuser_psql() {
  # Trust auth over TCP where the server allows it, else the postgres OS user over the socket.
  if psql -h "$PG_HOST" -p "$PG_PORT" -U postgres -d postgres -tAc 'SELECT 1' >/dev/null 2>&1 </dev/null; then
    psql -h "$PG_HOST" -p "$PG_PORT" -U postgres -d postgres -v ON_ERROR_STOP=1 -qtA "$@"
  else
    runuser -u postgres -- psql -p "$PG_PORT" -d postgres -v ON_ERROR_STOP=1 -qtA "$@"
  fi
}

ensure_role() {
  if PGPASSWORD=$DB_PASSWORD psql -h "$PG_HOST" -p "$PG_PORT" -U "$DB_USER" -d "$DB_NAME" -tAc 'SELECT 1' >/dev/null 2>&1 </dev/null; then
    return 0
  fi
  log "creating role $DB_USER and database $DB_NAME"
  superuser_psql <<SQL
DO \$\$BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '$DB_USER') THEN
    CREATE ROLE "$DB_USER" LOGIN CREATEDB PASSWORD '$DB_PASSWORD';
  END IF;
END\$\$;
SQL
  if [[ -z $(superuser_psql -c "SELECT 1 FROM pg_database WHERE datname = '$DB_NAME'" </dev/null) ]]; then
    superuser_psql -c "CREATE DATABASE \"$DB_NAME\" OWNER \"$DB_USER\"" </dev/null
  fi
}

ensure_redis() {
  if listening "$REDIS_HOST" "$REDIS_PORT"; then
    log "Redis already listening on $REDIS_HOST:$REDIS_PORT"
    return 0
  fi
  command -v redis-server >/dev/null || apt_install redis-server
  log "starting Redis"
  mkdir -p /var/lib/redis /var/log/redis
  redis-server --daemonize yes --bind 127.0.0.1 --port "$REDIS_PORT" --save "" \
    --appendonly no --dir /var/lib/redis --logfile /var/log/redis/herald.log
  wait_for Redis "$REDIS_HOST" "$REDIS_PORT" 30
}

ensure_rabbitmq() {
  if listening "$AMQP_HOST" "$AMQP_PORT"; then
    log "RabbitMQ already listening on $AMQP_HOST:$AMQP_PORT"
    return 0
  fi
  command -v rabbitmq-server >/dev/null || apt_install rabbitmq-server
  log "starting RabbitMQ"
  rabbitmq-server -detached
  wait_for RabbitMQ "$AMQP_HOST" "$AMQP_PORT" 120
}

ensure_postgres
ensure_redis
ensure_rabbitmq
