#!/usr/bin/env bash
# Builds the real Kubernetes control plane the end-to-end tests run against, idempotently:
#   - kube-apiserver, kube-controller-manager and kubectl of one release (K8S_VERSION below),
#     built from the Go module proxy through the wrapper module tests/peers/kube-apiserver-build
#     (its go.mod requires k8s.io/kubernetes and pins every staging module k8s.io/* with
#     `replace`; its `tool` lines name the three commands). The controller manager is there
#     because without it no namespace gets its `default` ServiceAccount, and the ServiceAccount
#     admission plugin then refuses every Pod;
#   - etcd: Debian's etcd-server package (3.4.23 on bookworm); kube-apiserver v1.35.4 runs on it
#     (its go.mod has the v3.6 client; tests/peers/smoke-cluster.sh is the proof).
# Binaries go into ${ATTESTGATE_PEERS:-$HOME/.cache/attestgate-peers}/bin (stable names are
# symlinks to files whose names carry the release and a hash of everything that goes into the
# build, so an edit to the wrapper or a new Go rebuilds, and nothing else does). Go's module and
# build caches stay where `go env GOMODCACHE GOCACHE` says, so a rebuild on a warm machine takes
# seconds. Each step prints how long it took. See tests/peers/README.md ("Kubernetes").
#
# The first build is long and runs under `nice` with -p=2, since other builds may share the
# machine. Its output goes to $PEERS/logs/build-NAME.log (and on failure its tail to stderr).
# Measured on 2 cores: empty Go caches 368 s (kube-apiserver 267 s, then kube-controller-manager
# 73 s and kubectl 28 s; 583 MB of modules, 2.8 GB of build cache); warm caches with the
# binaries gone 9 s; everything present 0.2 s.
set -euo pipefail

K8S_VERSION=v1.35.4 # also in tests/peers/kube-apiserver-build/go.mod
# The module's release time (`go list -m -json k8s.io/kubernetes@v1.35.4`), for `--version`.
K8S_BUILD_DATE=2026-04-15T18:01:22Z

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
wrapper=$repo/tests/peers/kube-apiserver-build
PEERS="${ATTESTGATE_PEERS:-$HOME/.cache/attestgate-peers}"
BIN=$PEERS/bin
mkdir -p "$BIN" "$PEERS/logs"

if [[ -d /usr/local/go/bin && ":$PATH:" != *":/usr/local/go/bin:"* ]]; then
  export PATH="/usr/local/go/bin:$PATH"
fi
command -v go >/dev/null || {
  echo "peers-cluster: go is not on PATH" >&2
  exit 1
}

now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }
step_start=0
step() {
  step_start=$(now)
  echo "== peers-cluster: $1"
}
step_done() { echo "== peers-cluster: $1 took $(elapsed "$step_start") s"; }
total_start=$(now)

# One build at a time (two CI-like runs on one machine would otherwise both build).
exec 9>"$PEERS/.peers-cluster.lock"
flock 9

# ---- etcd ----------------------------------------------------------------------------------------
installed() {
  [[ "$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null || true)" == "install ok installed" ]]
}
step "etcd (Debian etcd-server)"
if installed etcd-server; then
  echo "   present: $(dpkg-query -W -f='etcd-server ${Version}' etcd-server)"
else
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # The package's service is never started here (no init system); start-cluster.sh runs its own
  # etcd on loopback with its data in the test's directory.
  apt-get install -y -qq --no-install-recommends etcd-server >/dev/null
  echo "   installed: $(dpkg-query -W -f='etcd-server ${Version}' etcd-server)"
fi
ln -sfn "$(command -v etcd)" "$BIN/etcd"
step_done "etcd"

# ---- kube-apiserver, kube-controller-manager and kubectl -----------------------------------
grep -Eq "^(require)?[[:space:]]*k8s.io/kubernetes $K8S_VERSION( |$)" "$wrapper/go.mod" || {
  echo "peers-cluster: $wrapper/go.mod does not require k8s.io/kubernetes $K8S_VERSION" >&2
  exit 1
}
vpkg=k8s.io/component-base/version
cvpkg=k8s.io/client-go/pkg/version
minor=${K8S_VERSION#v1.}
minor=${minor%%.*}
ldflags="-s -w"
for p in $vpkg $cvpkg; do
  ldflags+=" -X $p.gitVersion=$K8S_VERSION -X $p.gitMajor=1 -X $p.gitMinor=$minor"
  ldflags+=" -X $p.gitTreeState=clean -X $p.buildDate=$K8S_BUILD_DATE"
done
build_flags=(-mod=readonly -trimpath -buildvcs=false -p=2 "-ldflags=$ldflags")
src_hash=$(cat "$wrapper/go.mod" "$wrapper/go.sum" <(go env GOVERSION GOARCH) \
  <(printf '%s\n' "${build_flags[@]}") | sha256sum | cut -c1-12)
outdir=$PEERS/kube-build-$K8S_VERSION-$src_hash
# Builds of an older pin or wrapper (about 250 MB each) are not kept. Only folders this script
# made are removed: they hold its marker file (other tools keep their own folders in $PEERS).
# A folder whose binaries still run is kept: stop.sh recognises a process by its executable's
# path, which would read "... (deleted)" after the removal.
marker=.made-by-peers-cluster
in_use() { # DIR: true when a running process's executable lies in DIR
  local exe
  for exe in /proc/[0-9]*/exe; do
    [[ "$(readlink "$exe" 2>/dev/null)" == "$1"/* ]] && return 0
  done
  return 1
}
for old in "$PEERS"/kube-build-*; do
  if [[ -d $old && $old != "$outdir" && -f $old/$marker ]]; then
    if in_use "$old"; then
      echo "   an older build is still running, kept: $old"
    else
      rm -rf "$old"
      echo "   removed an older build: $old"
    fi
  fi
done
mkdir -p "$outdir"
touch "$outdir/$marker"

build_one() { # NAME
  local name=$1 t0 tmp log=$PEERS/logs/build-$1.log
  step "$name $K8S_VERSION"
  if [[ -x $outdir/$name ]]; then
    echo "   up to date: $outdir/$name"
  else
    tmp=$outdir/$name.tmp.$$
    echo "   building k8s.io/kubernetes/cmd/$name (log: $log) ..."
    t0=$(now)
    if ! (cd "$wrapper" && CGO_ENABLED=0 GOFLAGS='' nice -n 10 \
      go build "${build_flags[@]}" -o "$tmp" "k8s.io/kubernetes/cmd/$name") >"$log" 2>&1; then
      tail -n 40 "$log" >&2
      rm -f "$tmp"
      echo "peers-cluster: building $name failed after $(elapsed "$t0") s" >&2
      exit 1
    fi
    mv -f "$tmp" "$outdir/$name"
    echo "   built in $(elapsed "$t0") s: $outdir/$name ($(du -m "$outdir/$name" | cut -f1) MB)"
  fi
  ln -sfn "$outdir/$name" "$BIN/$name"
  step_done "$name"
}
build_one kube-apiserver
build_one kube-controller-manager
build_one kubectl

# A build that does not even start is not a peer.
"$BIN/kube-apiserver" --version
"$BIN/kube-controller-manager" --version
"$BIN/kubectl" version --client | sed -n 1p
"$BIN/etcd" --version | sed -n 1p
echo "== peers-cluster: all ready in $(elapsed "$total_start") s: $BIN/{kube-apiserver,kube-controller-manager,kubectl,etcd}"
