#!/usr/bin/env bash
# Times `attestgate verify` and the go-witness v0.12 reference `verify` as whole processes on the
# same evidence (vector d03: two steps, ECDSA and RSA-PSS signers, artifactsFrom), N runs each,
# and prints the median and mean wall time per run. Run by hand, after `cargo build --release`
# and `.ci/peers.sh`:  benches/processes.sh [N]
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-50}
peers=${ATTESTGATE_PEERS:-$HOME/.cache/attestgate-peers}
# shellcheck disable=SC1091
source "$peers/peers.env"
ours=$PWD/target/release/attestgate
[[ -x $ours ]] || { echo "build first: cargo build --release" >&2; exit 2; }

case_dir=tests/fixtures/vectors/d03-pass-two-steps-artifactsfrom
args=(verify -p policy-signed.json -k policy-pubkey.pem -a attestations/compile.json
  -a attestations/package.json
  -s 4a371bebf2ddabab2785e7fc04a643798bdd8bf7c8365a4a51de646298b3c689
  -s 68ea7a55316c66a603a6838f05e4c130c2b4ff80)

measure() {
  local name=$1; shift
  (cd "$case_dir" && "$@" "${args[@]}" >/dev/null 2>&1) || { echo "$name did not pass" >&2; exit 1; }
  local times=()
  for ((i = 0; i < runs; i++)); do
    local start=$EPOCHREALTIME
    (cd "$case_dir" && "$@" "${args[@]}" >/dev/null 2>&1)
    times+=("$(awk -v a="$start" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.3f", (b - a) * 1000 }')")
  done
  printf '%s\n' "${times[@]}" | sort -n | awk -v name="$name" -v n="$runs" '
    { t[NR] = $1; sum += $1 }
    END { printf "%-28s median %7.2f ms   mean %7.2f ms   (%d runs)\n", name, t[int((n + 1) / 2)], sum / n, n }'
}

echo "machine: $(nproc) cores, $(uname -m), $(date -u +%Y-%m-%d)"
measure "attestgate verify" "$ours"
measure "go-witness v0.12 verify" "$WITNESS_V012"
