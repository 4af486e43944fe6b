#!/usr/bin/env bash
# Installs what the evidence tests need (a real OCI registry and a real Archivista), idempotently:
#   - Debian packages: docker-registry, skopeo, postgresql (Archivista's SQL store), apache2-utils
#     (htpasswd -B for the registry's basic auth), openssl, curl, python3;
#   - Go binaries archivista, archivistactl and crane, built with `go install` at pinned versions
#     into ${ATTESTGATE_PEERS}/bin (Go's default GOMODCACHE/GOCACHE, so later runs reuse them).
#     Archivista is built through the pinned wrapper module tests/peers/archivista-build (its
#     go.mod `tool` lines), because `go install github.com/in-toto/archivista/cmd/archivista@v0.11.1`
#     fails here: the Go module proxy answers 403 to the module's version list, which
#     `go install pkg@version` reads to look for a deprecation notice.
# Work already done is skipped; each step prints how long it took. See tests/peers/README.md.
set -euo pipefail

ARCHIVISTA_VERSION=v0.11.1 # newest the Go module proxy serves here; also in tests/peers/archivista-build/go.mod
CRANE_VERSION=v0.22.1      # `go list -m -versions github.com/google/go-containerregistry`

PEERS="${ATTESTGATE_PEERS:-$HOME/.cache/attestgate-peers}"
BIN="$PEERS/bin"
mkdir -p "$BIN"

if [[ -d /usr/local/go/bin && ":$PATH:" != *":/usr/local/go/bin:"* ]]; then
  export PATH="/usr/local/go/bin:$PATH"
fi

step_start=0
step() {
  step_start=$(date +%s.%N)
  echo "== peers-evidence: $1"
}
step_done() {
  local now
  now=$(date +%s.%N)
  awk -v a="$step_start" -v b="$now" -v n="$1" 'BEGIN { printf "== peers-evidence: %s took %.1f s\n", n, b - a }'
}

# ---- Debian packages -------------------------------------------------------------------------
installed() {
  [[ "$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null || true)" == "install ok installed" ]]
}

step "Debian packages"
packages=(docker-registry skopeo postgresql apache2-utils openssl curl python3)
missing=()
for p in "${packages[@]}"; do
  installed "$p" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "   installing: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # The postgresql package's postinst creates and tries to start the Debian default cluster; with no
  # init system that start is a no-op. Our tests never use that cluster (start-archivista.sh runs a
  # private one), and nothing is left listening.
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
else
  echo "   all present: ${packages[*]}"
fi
step_done "Debian packages"

# ---- Go binaries -----------------------------------------------------------------------------
command -v go >/dev/null || {
  echo "go is not on PATH" >&2
  exit 1
}

# built_version BINARY: the version of the module that holds its main package, or "".
built_version() {
  [[ -x "$1" ]] || return 0
  # `go version -m` prints "mod <module> <version> <sum>" for the main package's module.
  go version -m "$1" 2>/dev/null | awk '$1 == "mod" {print $3; exit}'
}

step "archivista + archivistactl ($ARCHIVISTA_VERSION)"
if [[ "$(built_version "$BIN/archivista")" == "$ARCHIVISTA_VERSION" &&
  "$(built_version "$BIN/archivistactl")" == "$ARCHIVISTA_VERSION" ]]; then
  echo "   already built: $BIN/archivista, $BIN/archivistactl"
else
  wrapper="$(cd "$(dirname "$0")/.." && pwd)/tests/peers/archivista-build"
  grep -q "github.com/in-toto/archivista $ARCHIVISTA_VERSION" "$wrapper/go.mod" || {
    echo "$wrapper/go.mod does not require archivista $ARCHIVISTA_VERSION" >&2
    exit 1
  }
  (cd "$wrapper" && GOBIN="$BIN" CGO_ENABLED=0 GOFLAGS=-mod=readonly go install tool)
fi
step_done "archivista + archivistactl"

step "crane (github.com/google/go-containerregistry/cmd/crane@$CRANE_VERSION)"
if [[ "$(built_version "$BIN/crane")" == "$CRANE_VERSION" ]]; then
  echo "   already built: $BIN/crane"
else
  GOBIN="$BIN" CGO_ENABLED=0 go install "github.com/google/go-containerregistry/cmd/crane@$CRANE_VERSION"
fi
step_done "crane"

echo "== peers-evidence: binaries in $BIN: $(cd "$BIN" && echo archivista archivistactl crane)"
