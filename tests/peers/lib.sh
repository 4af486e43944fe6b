# shellcheck shell=bash
# Helpers shared by start-archivista.sh, start-registry.sh and stop.sh (sourced, not run).

PEERS="${ATTESTGATE_PEERS:-$HOME/.cache/attestgate-peers}"
# shellcheck disable=SC2034 # used by the scripts that source this file
PEERS_BIN="$PEERS/bin"

die() {
  echo "error: $*" >&2
  exit 1
}

# now: seconds since the epoch with a fraction.
now() { date +%s.%N; }

# elapsed START: seconds since START, one decimal.
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

# free_port: a TCP port nobody listens on at 127.0.0.1 right now (the kernel picks it).
free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

# port_busy PORT: true when something accepts connections on 127.0.0.1:PORT.
port_busy() {
  python3 - "$1" <<'EOF'
import socket, sys
s = socket.socket()
s.settimeout(0.5)
sys.exit(0 if s.connect_ex(("127.0.0.1", int(sys.argv[1]))) == 0 else 1)
EOF
}

# check_port_arg PORT: dies unless PORT is 0..65535 (0 = "pick a free one", see pick_port).
check_port_arg() {
  if ! [[ "$1" =~ ^[0-9]+$ ]] || (($1 > 65535)); then
    die "not a port: $1"
  fi
}

# record_pid DIR NAME PID EXE: writes DIR/pids/NAME.pid as "PID EXE" (EXE resolved) so that
# stop.sh kills only that very process: it compares /proc/PID/exe with EXE before signalling.
# EXE is given, not read from /proc: right after `cmd &` the child may not have exec'd yet.
record_pid() {
  local dir=$1 name=$2 pid=$3 exe
  exe=$(readlink -f "$4")
  mkdir -p "$dir/pids"
  echo "$pid $exe" >"$dir/pids/$name.pid"
}

# pid_alive DIR NAME: true when DIR/pids/NAME.pid names a live process with the recorded exe.
pid_alive() {
  local file="$1/pids/$2.pid" pid exe
  [[ -f "$file" ]] || return 1
  read -r pid exe <"$file"
  [[ -n "$pid" && "$(readlink "/proc/$pid/exe" 2>/dev/null)" == "$exe" ]]
}

# read_pid DIR NAME: prints the pid recorded for NAME.
read_pid() { awk '{print $1}' "$1/pids/$2.pid"; }

# wait_until SECONDS DESCRIPTION PID LOG -- COMMAND...: runs COMMAND every 0.2 s until it succeeds,
# failing (with the tail of LOG) when SECONDS pass or when process PID dies.
wait_until() {
  local limit=$1 what=$2 pid=$3 log=$4 start
  shift 5
  start=$(now)
  while ! "$@" >/dev/null 2>&1; do
    if ! kill -0 "$pid" 2>/dev/null; then
      echo "--- last lines of $log:" >&2
      tail -n 30 "$log" >&2 || true
      die "$what exited before it was ready"
    fi
    if awk -v a="$start" -v b="$(now)" -v l="$limit" 'BEGIN { exit !(b - a > l) }'; then
      echo "--- last lines of $log:" >&2
      tail -n 30 "$log" >&2 || true
      die "$what not ready after ${limit}s"
    fi
    sleep 0.2
  done
}
