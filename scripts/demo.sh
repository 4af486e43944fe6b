#!/usr/bin/env bash
# scripts/demo.sh [--data DIR] [--json] [--keep]
#
# The quickstart: attestgate's main job on bundled data, on this machine only.
#   1. builds attestgate (cargo build --release --locked), unless $ATTESTGATE names a binary;
#   2. starts Debian's docker-registry on a free port of 127.0.0.1 (tests/peers/start-registry.sh)
#      and pushes the demo's three images into it with skopeo (examples/demo/images, an OCI
#      layout);
#   3. judges the demo's three AdmissionReviews with `attestgate review` (the code `attestgate
#      serve` runs for each request) under the demo's signed policy and evidence: one is
#      admitted, one denied, one admitted with a warning;
#   4. stops the registry and deletes everything it made, also on failure or Ctrl-C.
#
# Nothing listens or is contacted outside 127.0.0.1. Exit 0 when the three answers are the
# expected ones, 1 when one is not, 2 when a tool is missing.
#
#   --data DIR  the demo data (default examples/demo; examples/demo/regenerate.sh DIR makes more)
#   --json      also print each full AdmissionReview answer
#   --keep      keep the work folder (config, answers, registry log) and say where it is
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
data=$repo/examples/demo
# Everything here talks to 127.0.0.1 only: no request may go through a proxy the environment
# happens to name.
unset HTTP_PROXY HTTPS_PROXY ALL_PROXY http_proxy https_proxy all_proxy
show_json=0
keep=0
while (($#)); do
  case $1 in
    --data) data=$(cd "$2" && pwd); shift 2 ;;
    --json) show_json=1; shift ;;
    --keep) keep=1; shift ;;
    -h | --help) sed -n '2,21p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "demo.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done

# ---- tools ----------------------------------------------------------------------------------
packages=(docker-registry skopeo python3 curl openssl)
# Sets `missing` to the tools not found, Debian's packages first and then cargo.
find_missing() {
  missing=()
  local tool
  for tool in "${packages[@]}"; do
    command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
  done
  if [[ -z "${ATTESTGATE:-}" ]] && ! command -v cargo >/dev/null 2>&1; then
    missing+=(cargo)
  fi
}
find_missing
# Debian's packages are installed here when that needs no password (root with apt-get), as
# .ci/run does; otherwise the script says what to install and stops.
apt_missing=()
for tool in "${missing[@]}"; do
  [[ $tool == cargo ]] || apt_missing+=("$tool")
done
if ((${#apt_missing[@]})) && [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null 2>&1; then
  echo "demo.sh: installing ${apt_missing[*]} with apt-get" >&2
  export DEBIAN_FRONTEND=noninteractive
  if apt-get update -qq && apt-get install -y -qq "${apt_missing[@]}" >/dev/null; then
    find_missing
  fi
fi
if ((${#missing[@]})); then
  {
    echo "demo.sh: missing: ${missing[*]}"
    echo "  On Debian or Ubuntu:  sudo apt-get install docker-registry skopeo python3 curl openssl"
    echo "  (.ci/run installs them, through .ci/peers-evidence.sh.)"
    echo "  Rust: https://rustup.rs (rust-toolchain.toml pins the version; rustup fetches it)."
    echo "  docker-registry is the CNCF distribution registry (\`registry\` binary) packaged by Debian."
  } >&2
  exit 2
fi

# ---- the binary -----------------------------------------------------------------------------
if [[ -n "${ATTESTGATE:-}" ]]; then
  bin=$ATTESTGATE
else
  echo "building attestgate (cargo build --release --locked; the first build takes a few minutes)"
  (cd "$repo" && cargo build --release --locked --quiet)
  bin=$repo/target/release/attestgate
fi

# ---- a registry on loopback, cleaned up whatever happens -------------------------------------
work=$(mktemp -d "${TMPDIR:-/tmp}/attestgate-demo.XXXXXX")
cleanup() {
  "$repo/tests/peers/stop.sh" "$work/registry" >/dev/null 2>&1 || true
  if ((keep)); then
    echo "kept: $work (config.yaml, answers/, registry/registry/log)"
  else
    rm -rf "$work"
  fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if ! "$repo/tests/peers/start-registry.sh" "$work/registry" 0 >"$work/registry-start.log" 2>&1; then
  cat "$work/registry-start.log" >&2
  echo "demo.sh: the registry did not start" >&2
  exit 1
fi
registry=$(sed -n 's/^REGISTRY=//p' "$work/registry/registry.env")

# ---- the demo data, with the registry's address in place of 127.0.0.1:5000 -------------------
placeholder=$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["registry"])' "$data/demo.json")
mkdir -p "$work/demo" "$work/answers"
cp -R "$data/policy-signed.json" "$data/policy-pubkey.pem" "$data/evidence" "$data/reviews" \
  "$data/demo.json" "$work/demo/"
sed "s/${placeholder//./\\.}/$registry/g" "$data/config.yaml" >"$work/demo/config.yaml"
for file in "$work/demo/reviews"/*.json; do
  sed -i "s/${placeholder//./\\.}/$registry/g" "$file"
done

# ---- push the images, then judge the reviews ---------------------------------------------------
python3 - "$data" "$registry" <<'EOF' >"$work/images.tsv"
import json, sys
demo = json.load(open(sys.argv[1] + "/demo.json"))
for im in demo["images"]:
    print("\t".join([im["layoutTag"], im["name"], im["digest"], im["story"]]))
EOF

echo "attestgate demo: registry $registry (docker-registry on loopback, removed at the end)"
while IFS=$'\t' read -r tag name digest story; do
  if ! skopeo --insecure-policy copy -q --preserve-digests --dest-tls-verify=false \
    "oci:$data/images:$tag" "docker://$registry/$name" 2>"$work/skopeo.log"; then
    cat "$work/skopeo.log" >&2
    echo "demo.sh: pushing $name failed" >&2
    exit 1
  fi
  printf '  pushed %-17s %s…  %s\n' "$name" "${digest:0:19}" "$story"
done <"$work/images.tsv"
shown=${data#"$repo/"}
echo "  policy $shown/policy-signed.json (key-signed, expires 2036-01-01), evidence in $shown/evidence/"
echo

python3 - "$work/demo/demo.json" <<'EOF' >"$work/reviews.tsv"
import json, sys
for r in json.load(open(sys.argv[1]))["reviews"]:
    print("\t".join([r["file"], r["mode"], r["expect"], r["object"], r["image"]]))
EOF

failed=0
n=0
while IFS=$'\t' read -r file mode expect object image; do
  n=$((n + 1))
  answer=$work/answers/$(basename "$file")
  set +e
  "$bin" review --config "$work/demo/config.yaml" --mode "$mode" "$work/demo/$file" \
    >"$answer" 2>"$answer.log"
  code=$?
  set -e
  if [[ ! -s "$answer" ]]; then
    echo "$n. $mode: no answer for $file (exit $code):" >&2
    cat "$answer.log" >&2
    failed=1
    continue
  fi
  python3 - "$answer" "$n" "$mode" "$expect" "$object" "$image" "$work/demo/" <<'EOF' || failed=1
import json, sys
path, n, mode, expect, obj, image, folder = sys.argv[1:]
response = json.load(open(path))["response"]
records = json.loads(response.get("auditAnnotations", {}).get("images", "[]"))
record = records[0] if records else {}
warnings = response.get("warnings") or []


def short(text):
    # Evidence paths are printed relative to the demo folder: the answer names the copy of the
    # demo data in the work folder, by its absolute path.
    return (text or "").replace(folder, "")


if not response.get("allowed"):
    got, shown = "denied", [response.get("status", {}).get("message", "")]
elif warnings:
    got, shown = "warned", warnings
else:
    got, shown = "admitted", []
label = {"admitted": "ADMITTED", "denied": "DENIED (403)", "warned": "ADMITTED WITH A WARNING"}[got]
print(f"{n}. {mode:<7} CREATE {obj:<28} {image:<16}  -> {label}")
if got == "admitted":
    evidence = ", ".join(short(e) for e in record.get("evidence", []))
    print(f"     {record.get('digest', '')[:19]}… bound by {record.get('binding')} to {evidence}")
for line in shown:
    print(f"     {'denial: ' if got == 'denied' else 'warning:'} {short(line)}")
if any(line.endswith("…") for line in shown) and record.get("reason"):
    print(f"     record:  {short(record['reason'])}")  # the decision record keeps it whole
if got != expect:
    print(f"     UNEXPECTED: the demo expects {expect}")
    sys.exit(1)
EOF
  if ((show_json)); then
    sed 's/^/     /' "$answer"
  fi
done <"$work/reviews.tsv"

echo
if ((failed)); then
  echo "demo.sh: an answer was not the expected one (see above)"
  exit 1
fi
echo "$n of $n reviews answered as expected. The same code answers /validate/<mode> under \`attestgate serve\`."
echo "Next: scripts/demo.sh --json shows the full answers, with the decision record in auditAnnotations."
