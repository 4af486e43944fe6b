#!/usr/bin/env bash
# start-archivista.sh DIR PORT      (PORT 0: a free port, written to DIR/archivista.env)
#
# Starts, for one test run, a private PostgreSQL cluster (data under DIR/postgres, listening only
# on 127.0.0.1 at a free port, no unix socket) and Archivista on 127.0.0.1:PORT with FILE blob
# storage under DIR/archivista/blobs and GraphQL on. Waits until both answer, writes pids into
# DIR/pids and the connection facts into DIR/archivista.env. Idempotent: if Archivista from this
# DIR already answers on PORT it only says so. Stop everything with tests/peers/stop.sh DIR.
#
# Needs .ci/peers-evidence.sh to have run (archivista binary, Debian postgresql).
# Env: ATTESTGATE_PEERS (where the binaries are), ARCHIVISTA_BIN, PG_BINDIR,
#      ARCHIVISTA_START_TIMEOUT (seconds, default 60), ARCHIVISTA_LOG_LEVEL (default INFO).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source=tests/peers/lib.sh
source "$here/lib.sh"

[[ $# -eq 2 ]] || die "usage: $0 DIR PORT"
mkdir -p "$1"
DIR="$(cd "$1" && pwd)"
PORT=$2
check_port_arg "$PORT"
TIMEOUT="${ARCHIVISTA_START_TIMEOUT:-60}"
ARCHIVISTA_BIN="${ARCHIVISTA_BIN:-$PEERS_BIN/archivista}"
[[ -x "$ARCHIVISTA_BIN" ]] || die "$ARCHIVISTA_BIN missing: run .ci/peers-evidence.sh"
if [[ -z "${PG_BINDIR:-}" ]]; then
  PG_BINDIR=$(printf '%s\n' /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
fi
[[ -x "${PG_BINDIR:-}/postgres" ]] || die "no PostgreSQL server binaries (PG_BINDIR): run .ci/peers-evidence.sh"

if pid_alive "$DIR" archivista; then
  running_port=$(sed -n 's/^ARCHIVISTA_PORT=//p' "$DIR/archivista.env" 2>/dev/null)
  if [[ "$PORT" == 0 || "$PORT" == "$running_port" ]] && port_busy "$running_port"; then
    echo "archivista already running from $DIR on 127.0.0.1:$running_port (pid $(read_pid "$DIR" archivista))"
    exit 0
  fi
  die "an archivista from $DIR runs on port ${running_port:-?}: stop it first"
fi
[[ "$PORT" != 0 ]] || PORT=$(free_port)
if port_busy "$PORT"; then
  die "127.0.0.1:$PORT is already in use"
fi

total_start=$(now)
mkdir -p "$DIR/pids" "$DIR/archivista/blobs"

# ---- PostgreSQL ------------------------------------------------------------------------------
# The server refuses to run as root, so as root it runs as the Debian package's `postgres` user.
as_pg=()
if [[ $(id -u) -eq 0 ]]; then
  id postgres >/dev/null 2>&1 || die "no 'postgres' user (Debian's postgresql package makes it)"
  as_pg=(runuser -u postgres --)
fi
PGBASE="$DIR/postgres"
if [[ ! -e "$PGBASE" ]]; then
  mkdir -p "$PGBASE"
  if ((${#as_pg[@]})); then
    chown postgres:postgres "$PGBASE"
    if ! "${as_pg[@]}" test -w "$PGBASE"; then
      # A parent of DIR is not searchable by `postgres` (e.g. under /root): keep the cluster in
      # /tmp instead, behind a symlink; stop.sh deletes that directory.
      rmdir "$PGBASE"
      fallback=$(mktemp -d /tmp/attestgate-pg.XXXXXX)
      chown postgres:postgres "$fallback"
      ln -s "$fallback" "$PGBASE"
      echo "note: postgres cannot reach $DIR; cluster lives in $fallback"
    fi
  fi
  chmod 700 "$PGBASE"
fi
PGBASE=$(readlink -f "$PGBASE") # the postgres user may only reach the /tmp fallback directly
PGDATA="$PGBASE/data"
PGLOG="$PGBASE/log"

if [[ ! -f "$PGDATA/PG_VERSION" ]]; then
  t=$(now)
  rm -rf "$PGDATA" # a half-made cluster from a failed initdb
  openssl rand -hex 16 >"$PGBASE/password"
  ((${#as_pg[@]})) && chown postgres:postgres "$PGBASE/password"
  chmod 600 "$PGBASE/password"
  "${as_pg[@]}" "$PG_BINDIR/initdb" -D "$PGDATA" -U archivista --pwfile="$PGBASE/password" \
    --auth=scram-sha-256 -E UTF8 --locale=C >"$PGBASE/initdb.log" 2>&1 ||
    {
      cat "$PGBASE/initdb.log" >&2
      die "initdb failed"
    }
  echo "include_if_exists = 'attestgate.conf'" >>"$PGDATA/postgresql.conf"
  echo "postgres: initdb took $(elapsed "$t") s"
fi
PGPASSWORD=$(cat "$PGBASE/password")
export PGPASSWORD

pg_ready() { "$PG_BINDIR/pg_isready" -q -h 127.0.0.1 -p "$PGPORT" -U archivista -d postgres; }

if pid_alive "$DIR" postgres; then
  PGPORT=$(cat "$PGBASE/port")
  echo "postgres already running (pid $(read_pid "$DIR" postgres), 127.0.0.1:$PGPORT)"
else
  t=$(now)
  PGPORT=$(free_port)
  echo "$PGPORT" >"$PGBASE/port"
  # Only TCP on loopback; no unix socket; durability off (throw-away test data).
  cat >"$PGDATA/attestgate.conf" <<EOF
listen_addresses = '127.0.0.1'
port = $PGPORT
unix_socket_directories = ''
fsync = off
synchronous_commit = off
full_page_writes = off
max_connections = 50
shared_buffers = 32MB
EOF
  ((${#as_pg[@]})) && chown postgres:postgres "$PGDATA/attestgate.conf"
  rm -f "$PGDATA/postmaster.pid" # stale after a kill -9; the server would refuse to start
  "${as_pg[@]}" "$PG_BINDIR/pg_ctl" -D "$PGDATA" -l "$PGLOG" -w -t "$TIMEOUT" start >/dev/null ||
    {
      tail -n 30 "$PGLOG" >&2
      die "postgres did not start"
    }
  record_pid "$DIR" postgres "$(head -n 1 "$PGDATA/postmaster.pid")" "$PG_BINDIR/postgres"
  echo "postgres: started on 127.0.0.1:$PGPORT in $(elapsed "$t") s"
fi
wait_until "$TIMEOUT" postgres "$(read_pid "$DIR" postgres)" "$PGLOG" -- pg_ready

if [[ -z "$("$PG_BINDIR/psql" -h 127.0.0.1 -p "$PGPORT" -U archivista -d postgres -tAc \
  "SELECT 1 FROM pg_database WHERE datname = 'archivista'")" ]]; then
  "$PG_BINDIR/createdb" -h 127.0.0.1 -p "$PGPORT" -U archivista archivista
fi

# ---- Archivista ------------------------------------------------------------------------------
# Archivista creates its tables itself at start (ent's client.Schema.Create); the atlas CLI that
# its container entrypoint runs is not needed.
t=$(now)
FILE_PORT=$(free_port)
echo "$FILE_PORT" >"$DIR/archivista/file-serve.port"
ALOG="$DIR/archivista/log"
# A clean environment: Archivista refuses to start when ARCHIVIST_* (old prefix) and ARCHIVISTA_*
# variables are both set, and nothing else from the caller's environment should leak in.
# ARCHIVISTA_FILE_SERVE_ON must be set: the FILE backend always runs a static file server, and
# an empty address means ":80" on every interface.
env -i PATH=/usr/bin:/bin HOME="$DIR/archivista" \
  ARCHIVISTA_LISTEN_ON="tcp://127.0.0.1:$PORT" \
  ARCHIVISTA_LOG_LEVEL="${ARCHIVISTA_LOG_LEVEL:-INFO}" \
  ARCHIVISTA_ENABLE_SPIFFE=false \
  ARCHIVISTA_ENABLE_SQL_STORE=true \
  ARCHIVISTA_SQL_STORE_BACKEND=PSQL \
  ARCHIVISTA_SQL_STORE_CONNECTION_STRING="postgresql://archivista:$PGPASSWORD@127.0.0.1:$PGPORT/archivista?sslmode=disable" \
  ARCHIVISTA_SQL_STORE_MAX_OPEN_CONNECTIONS=20 \
  ARCHIVISTA_STORAGE_BACKEND=FILE \
  ARCHIVISTA_FILE_DIR="$DIR/archivista/blobs/" \
  ARCHIVISTA_FILE_SERVE_ON="127.0.0.1:$FILE_PORT" \
  ARCHIVISTA_ENABLE_GRAPHQL=true \
  ARCHIVISTA_GRAPHQL_WEB_CLIENT_ENABLE=false \
  ARCHIVISTA_ENABLE_ARTIFACT_STORE=false \
  "$ARCHIVISTA_BIN" >"$ALOG" 2>&1 </dev/null &
apid=$!
record_pid "$DIR" archivista "$apid" "$ARCHIVISTA_BIN"

graphql_ready() {
  curl -sf -o /dev/null --max-time 2 -H 'Content-Type: application/json' \
    --data '{"query":"{ __typename }"}' "http://127.0.0.1:$PORT/query"
}
wait_until "$TIMEOUT" archivista "$apid" "$ALOG" -- graphql_ready
echo "archivista: ready on http://127.0.0.1:$PORT in $(elapsed "$t") s (pid $apid)"

cat >"$DIR/archivista.env" <<EOF
ARCHIVISTA_URL=http://127.0.0.1:$PORT
ARCHIVISTA_PORT=$PORT
ARCHIVISTA_BLOB_DIR=$DIR/archivista/blobs
ARCHIVISTA_FILE_SERVE_PORT=$FILE_PORT
ARCHIVISTA_PG_PORT=$PGPORT
ARCHIVISTA_PG_URL=postgresql://archivista@127.0.0.1:$PGPORT/archivista?sslmode=disable
EOF
echo "started in $(elapsed "$total_start") s; facts in $DIR/archivista.env"
