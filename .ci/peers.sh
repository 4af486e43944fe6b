#!/usr/bin/env bash
# Builds the reference implementations attestgate's tests compare against, into a
# cache directory, from the Go module proxy only (ordinary `go` commands).
#
#   bash .ci/peers.sh          build what is missing; progress and timings on stderr
#   bash .ci/peers.sh --env    same, then print `export NAME=PATH` lines on stdout
#                              (eval "$(bash .ci/peers.sh --env)")
#
# Cache: $ATTESTGATE_PEERS, default $HOME/.cache/attestgate-peers. Each binary's
# file name carries its pin and a hash of its wrapper sources, so the script is
# idempotent (an existing pinned binary is not rebuilt) and an edit to a wrapper
# rebuilds it. Stable names: $CACHE/bin/<name> (symlinks) and $CACHE/peers.env.
# Go's module and build caches stay where `go env GOMODCACHE GOCACHE` says, so CI
# on the same machine reuses them.
#
# Peers (see tests/reference/README.md):
#   witness-v012  tests/reference/witness-v012: witness's run/sign/verify command
#                 line on go-witness v0.12.0 (the hardened engine; doc §5.13).
#   witness-v010  tests/reference/witness-v010: the same main.go on go-witness
#                 v0.10.0, the engine the released witness CLI v0.11.0 pins
#                 (pre-hardening semantics).
#
# NOT BUILT, because the Go module proxy refuses them (checked 2026-12):
#   a) the released witness CLI. `go list -m -versions github.com/in-toto/witness`
#      and `go install github.com/in-toto/witness@v0.11.0` both fail with
#        reading https://proxy.golang.org/github.com/in-toto/witness/@v/v0.11.0.info:
#        403 Forbidden  server response: This module version is not available.
#      so no tag could be listed; WITNESS_CLI_PIN below is the newest tag named in
#      shared/docs/evidence-format.md §0, not one read from the proxy.
#   c) cilock: module github.com/aflock-ai/rookery/cilock (CLI package
#      .../cilock/cmd/cilock). `go install github.com/aflock-ai/rookery/cilock/cmd/cilock@latest`
#      fails with "403 Forbidden ... This module version is not available" for
#      github.com/aflock-ai/rookery, .../rookery/cilock and .../cilock/cmd/cilock.
#      (Its go.mod also replaces every plugin with a ../ path, which `go install
#      pkg@version` rejects even where the module is served.)
#   Set ATTESTGATE_PEERS_TRY_UPSTREAM=1 to try both again (failures are reported,
#   not fatal).
#
# Also refused by the proxy: github.com/fkautz/omnitrail-go, which go-witness's
# root package imports (omnitrail attestor). Both wrappers replace it with
# tests/reference/omnitrail-stub (generic JSON envelope; producing fails).
set -euo pipefail

WITNESS_CLI_PIN=v0.11.0
CILOCK_PKG=github.com/aflock-ai/rookery/cilock/cmd/cilock
CILOCK_PIN=latest

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cache=${ATTESTGATE_PEERS:-$HOME/.cache/attestgate-peers}
want_env=0
for arg in "$@"; do
  case $arg in
    --env) want_env=1 ;;
    -h | --help) sed -n '2,9p' "${BASH_SOURCE[0]}"; exit 0 ;;
    *) echo "peers.sh: unknown argument $arg" >&2; exit 2 ;;
  esac
done

command -v go >/dev/null || { echo "peers.sh: go is not on PATH" >&2; exit 1; }
mkdir -p "$cache/bin"

say() { echo "peers.sh: $*" >&2; }
now() { echo "$EPOCHREALTIME"; }
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

script_start=$(now)
env_lines=()
# -mod=readonly (the default, stated): go.sum is committed, nothing is re-resolved.
build_flags=(-mod=readonly -trimpath -buildvcs=false "-ldflags=-s -w")

# build_wrapper NAME DIR GO_WITNESS_VERSION
build_wrapper() {
  local name=$1 dir=$repo/$2 pin=$3
  # The pin plus a hash of everything that goes into the build.
  local src_hash
  src_hash=$(cat "$dir/go.mod" "$dir/go.sum" "$dir/main.go" \
    "$repo"/tests/reference/omnitrail-stub/go.mod "$repo"/tests/reference/omnitrail-stub/*.go \
    <(go env GOVERSION; printf '%s\n' "${build_flags[@]}") | sha256sum | cut -c1-12)
  local out=$cache/$name-go-witness-$pin-$src_hash
  if [[ -x $out ]]; then
    say "$name: up to date ($out), 0.0 s"
  else
    say "$name: building against go-witness $pin ..."
    local t0 tmp
    t0=$(now)
    tmp=$out.tmp.$$
    (cd "$dir" && go build "${build_flags[@]}" -o "$tmp" .)
    mv -f "$tmp" "$out"
    say "$name: built in $(elapsed "$t0") s -> $out"
  fi
  # A build that does not even start is not a peer.
  "$out" version >&2
  ln -sfn "$out" "$cache/bin/$name"
  env_lines+=("export $(echo "$name" | tr 'a-z-' 'A-Z_')=$cache/bin/$name")
}

build_wrapper witness-v012 tests/reference/witness-v012 v0.12.0
build_wrapper witness-v010 tests/reference/witness-v010 v0.10.0

if [[ ${ATTESTGATE_PEERS_TRY_UPSTREAM:-0} == 1 ]]; then
  try_install() { # NAME PKG@VERSION
    local name=$1 target=$2 t0 dest=$cache/$1-upstream
    if [[ -x $dest/$name ]]; then
      say "$name: up to date ($dest/$name), 0.0 s"
      return 0
    fi
    t0=$(now)
    if GOBIN=$dest go install "$target" >&2; then
      say "$name: installed $target in $(elapsed "$t0") s"
      ln -sfn "$dest/$name" "$cache/bin/$name-upstream"
    else
      say "$name: FAILED to install $target after $(elapsed "$t0") s (not fatal)"
    fi
  }
  try_install witness "github.com/in-toto/witness@$WITNESS_CLI_PIN"
  try_install cilock "$CILOCK_PKG@$CILOCK_PIN"
else
  say "released witness CLI ($WITNESS_CLI_PIN) and cilock: skipped, the module proxy refuses them (ATTESTGATE_PEERS_TRY_UPSTREAM=1 to retry)"
fi

printf '%s\n' "${env_lines[@]}" >"$cache/peers.env"
say "all peers ready in $(elapsed "$script_start") s; source $cache/peers.env"
if ((want_env)); then
  printf '%s\n' "${env_lines[@]}"
fi
