#!/usr/bin/env bash
# stop.sh DIR
#
# Stops every server that start-archivista.sh / start-registry.sh / start-cluster.sh started
# from DIR: each DIR/pids/NAME.pid names one process and its executable, and only a live process
# with that very executable is signalled (so a recycled pid is never hit). Clients go first
# (archivista, the registry, the token server, kube-controller-manager, smoke webhooks) with
# SIGTERM, then kube-apiserver and etcd with SIGTERM, PostgreSQL last with SIGINT ("fast"
# shutdown). Waits up to 10 s per process (1 s for archivista, see below), then SIGKILL.
# Idempotent: nothing running is fine. Data stays in DIR, except a PostgreSQL cluster that had to
# live in /tmp (DIR/postgres is then a symlink), which is deleted.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source=tests/peers/lib.sh
source "$here/lib.sh"

[[ $# -eq 1 ]] || die "usage: $0 DIR"
[[ -d "$1" ]] || {
  echo "nothing to stop: $1 does not exist"
  exit 0
}
DIR="$(cd "$1" && pwd)"
start=$(now)

stop_one() {
  local name=$1 sig=$2 pid i tries=50
  # Archivista v0.11.1 with FILE storage never exits on SIGTERM: its main waits for the file
  # server's goroutine, which sits in ListenAndServe and never reaches its ctx.Done() check.
  # Everything it stored is already committed, so SIGKILL after 1 s loses nothing.
  [[ "$name" == archivista ]] && tries=5
  if ! pid_alive "$DIR" "$name"; then
    rm -f "$DIR/pids/$name.pid"
    return 0
  fi
  pid=$(read_pid "$DIR" "$name")
  kill "-$sig" "$pid" 2>/dev/null || true
  for ((i = 0; i < tries; i++)); do
    pid_alive "$DIR" "$name" || break
    sleep 0.2
  done
  if pid_alive "$DIR" "$name"; then
    echo "$name (pid $pid) still running $((tries / 5)) s after SIG$sig: SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
    sleep 0.2
  fi
  echo "stopped $name (pid $pid)"
  rm -f "$DIR/pids/$name.pid"
}

if [[ -d "$DIR/pids" ]]; then
  for f in "$DIR"/pids/*.pid; do
    [[ -e "$f" ]] || continue
    name=$(basename "$f" .pid)
    [[ "$name" == postgres || "$name" == etcd || "$name" == kube-apiserver ]] || stop_one "$name" TERM
  done
  # start-cluster.sh: kube-apiserver after its clients (with kube-controller-manager's watches
  # still open it does not exit within 10 s of SIGTERM), etcd after kube-apiserver.
  stop_one kube-apiserver TERM
  stop_one etcd TERM
  stop_one postgres INT
fi

if [[ -L "$DIR/postgres" ]]; then
  target=$(readlink "$DIR/postgres")
  if [[ "$target" == /tmp/attestgate-pg.* ]]; then
    rm -rf "$target"
    rm -f "$DIR/postgres"
  fi
fi
echo "stop.sh: done in $(elapsed "$start") s"
