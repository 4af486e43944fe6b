#!/usr/bin/env bash
# smoke-registry.sh DIR
#
# Proves a registry started by start-registry.sh DIR ... works, whatever its --auth/--tls, using
# the facts in DIR/registry.env:
#   1. skopeo pushes the OCI layout of mklayout.py (tag v1 and the 2-platform index "multi") with
#      --preserve-digests, and the registry serves exactly the digests mklayout.py printed;
#   2. crane builds an image from a tarball layer (`crane append --oci-empty-base`), adds labels
#      with `crane mutate --label`, and `crane digest` / `crane config` show them;
#   3. with auth: an anonymous `crane digest` is refused; with TLS: curl without the CA fails.
# With --auth token, crane (go-containerregistry >= v0.21.x) refuses a token realm on a loopback or
# private IP unless it is the registry's own host:port, and ours is on another port: there the
# checks run through skopeo and curl (token fetched from the realm by hand), and the script only
# asserts crane's refusal.
# Needs .ci/peers-evidence.sh (crane in $ATTESTGATE_PEERS/bin, skopeo).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source=tests/peers/lib.sh
source "$here/lib.sh"

[[ $# -eq 1 && -f "$1/registry.env" ]] || die "usage: $0 DIR (a DIR given to start-registry.sh)"
DIR="$(cd "$1" && pwd)"
set -a
# shellcheck disable=SC1091
source "$DIR/registry.env"
set +a
CRANE="${CRANE_BIN:-$PEERS_BIN/crane}"
[[ -x "$CRANE" ]] || die "$CRANE missing: run .ci/peers-evidence.sh"
export DOCKER_CONFIG # crane reads the login from DOCKER_CONFIG/config.json
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
REV=$(printf 'ab%.0s' {1..20}) # 40 hex characters

crane_flags=()
skopeo_dest=(--dest-tls-verify=false)
skopeo_src=(--src-tls-verify=false)
curl_ca=()
curl_basic=()
if [[ "$REGISTRY_TLS" == 1 ]]; then
  export SSL_CERT_FILE="$REGISTRY_CA" # Go (crane) trusts the test CA through this
  skopeo_dest=(--dest-cert-dir "$REGISTRY_CERT_DIR")
  skopeo_src=(--src-cert-dir "$REGISTRY_CERT_DIR")
  curl_ca=(--cacert "$REGISTRY_CA")
else
  crane_flags=(--insecure)
fi
if [[ "$REGISTRY_AUTH" != none ]]; then
  skopeo_dest+=(--dest-creds "$REGISTRY_USER:$REGISTRY_PASSWORD")
  skopeo_src+=(--src-creds "$REGISTRY_USER:$REGISTRY_PASSWORD")
  curl_basic=(-u "$REGISTRY_USER:$REGISTRY_PASSWORD")
fi
crane() { "$CRANE" "${crane_flags[@]}" "$@"; }

# ---- 1. skopeo from an OCI layout --------------------------------------------------------------
expected=$(python3 "$here/mklayout.py" "$work/layout" "$REV")
want() { python3 -c 'import json,sys; print(json.loads(sys.argv[1])[sys.argv[2]])' "$expected" "$1"; }
t=$(now)
skopeo --insecure-policy copy -q "${skopeo_dest[@]}" --preserve-digests \
  "oci:$work/layout:v1" "docker://$REGISTRY/demo/hello:v1"
skopeo --insecure-policy copy -q --all "${skopeo_dest[@]}" --preserve-digests \
  "oci:$work/layout:multi" "docker://$REGISTRY/demo/hello:multi"
echo "ok skopeo push v1 + multi ($(elapsed "$t") s)"
if [[ "$REGISTRY_AUTH" == token ]]; then
  for tag in v1 multi; do
    got=sha256:$(skopeo inspect --raw "${skopeo_src[@]/--src-/--}" "docker://$REGISTRY/demo/hello:$tag" | sha256sum | cut -d' ' -f1)
    [[ "$got" == "$(want "$tag")" ]] || die "skopeo digest $tag: $got, mklayout said $(want "$tag")"
  done
  echo "ok skopeo inspect --raw digests: v1=$(want v1) multi=$(want multi)"
else
  for tag in v1 multi; do
    got=$(crane digest "$REGISTRY/demo/hello:$tag")
    [[ "$got" == "$(want "$tag")" ]] || die "crane digest $tag: $got, mklayout said $(want "$tag")"
  done
  got=$(crane digest --platform linux/arm64 "$REGISTRY/demo/hello:multi")
  [[ "$got" == "$(want arm64)" ]] || die "arm64 child digest $got, expected $(want arm64)"
  crane config "$REGISTRY/demo/hello:v1" | grep -q "\"org.opencontainers.image.revision\":\"$REV\"" ||
    die "crane config v1 lacks the revision label"
  echo "ok crane digest/config: v1=$(want v1) multi=$(want multi), revision label $REV"
fi
skopeo inspect "${skopeo_src[@]/--src-/--}" "docker://$REGISTRY/demo/hello:v1" |
  grep -q "\"org.opencontainers.image.revision\": \"$REV\"" || die "skopeo inspect lacks the label"
echo "ok skopeo inspect shows the labels"
# distribution 2.8 answers 404 to an OCI manifest unless the Accept header names OCI types.
accept='Accept: application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json'
if [[ "$REGISTRY_AUTH" == token ]]; then
  # The Docker token flow by hand: basic credentials at the realm buy a bearer token.
  get_token() { # get_token [curl credential flags...]: a pull token for demo/hello
    curl -sSf "${curl_ca[@]}" "$@" -G "$REGISTRY_TOKEN_REALM" \
      --data-urlencode "service=attestgate-test-registry" \
      --data-urlencode "scope=repository:demo/hello:pull" |
      python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])'
  }
  token=$(get_token "${curl_basic[@]}")
  auth=(-H "Authorization: Bearer $token")
  ! get_token -u "$REGISTRY_USER:wrong" >/dev/null 2>&1 || die "the realm accepted a wrong password"
  anon=$(get_token)
  code=$(curl -s -o /dev/null -w '%{http_code}' "${curl_ca[@]}" -H "Authorization: Bearer $anon" \
    -H "$accept" "$REGISTRY_URL/v2/demo/hello/manifests/multi")
  [[ "$code" == 401 || "$code" == 403 ]] || die "an anonymous token pulled (HTTP $code)"
  echo "ok token realm: wrong password refused, anonymous token gets HTTP $code"
else
  auth=("${curl_basic[@]}")
fi
hdr=$(curl -sS -I "${curl_ca[@]}" "${auth[@]}" -H "$accept" \
  "$REGISTRY_URL/v2/demo/hello/manifests/multi" 2>&1 || true)
grep -qi "docker-content-digest: $(want multi)" <<<"$hdr" || die "HEAD multi: $hdr"
echo "ok curl HEAD: Docker-Content-Digest $(want multi)"

# ---- 2. crane from a tarball layer + mutate --label -------------------------------------------
if [[ "$REGISTRY_AUTH" == token ]]; then
  if out=$(crane digest "$REGISTRY/demo/hello:v1" 2>&1); then
    die "crane accepted a loopback token realm on another port; update smoke-registry.sh/README"
  fi
  grep -q 'private or link-local' <<<"$out" || die "crane failed otherwise: $out"
  echo "ok (known) crane refuses the loopback realm: $(tail -n 1 <<<"$out" | cut -c1-120)"
  echo "registry smoke ($REGISTRY_AUTH, tls=$REGISTRY_TLS): all ok"
  exit 0
fi
mkdir -p "$work/root"
echo "built by crane" >"$work/root/hello.txt"
tar --mtime=@0 --owner=0 --group=0 --numeric-owner -C "$work/root" -cf "$work/layer.tar" hello.txt
t=$(now)
crane append --oci-empty-base -f "$work/layer.tar" -t "$REGISTRY/demo/crane:base" >/dev/null
labeled=$(crane mutate "$REGISTRY/demo/crane:base" -t "$REGISTRY/demo/crane:v1" \
  --label "org.opencontainers.image.revision=$REV" \
  --label "org.opencontainers.image.source=https://example.invalid/crane")
echo "ok crane append + mutate ($(elapsed "$t") s): $labeled"
digest=$(crane digest "$REGISTRY/demo/crane:v1")
[[ "$labeled" == *"@$digest" ]] || die "mutate printed $labeled but the tag resolves to $digest"
crane config "$REGISTRY/demo/crane:v1" | python3 -c '
import json, sys
labels = json.load(sys.stdin)["config"]["Labels"]
assert labels["org.opencontainers.image.revision"] == sys.argv[1], labels
print("ok crane config labels:", labels)' "$REV"
crane manifest "$REGISTRY/demo/crane:v1" | grep -q 'application/vnd.oci.image.manifest.v1+json' ||
  die "crane image is not an OCI manifest"

# ---- 3. negative checks ----------------------------------------------------------------------
if [[ "$REGISTRY_AUTH" != none ]]; then
  if out=$(DOCKER_CONFIG="$work/empty" "$CRANE" "${crane_flags[@]}" digest "$REGISTRY/demo/hello:v1" 2>&1); then
    die "anonymous crane digest succeeded against an auth registry: $out"
  fi
  echo "ok anonymous refused: $(tail -n 1 <<<"$out" | cut -c1-160)"
fi
if [[ "$REGISTRY_TLS" == 1 ]]; then
  if curl -s -o /dev/null "$REGISTRY_URL/v2/"; then
    die "curl without the test CA trusted the registry"
  fi
  echo "ok TLS: curl without --cacert fails"
fi
echo "registry smoke ($REGISTRY_AUTH, tls=$REGISTRY_TLS): all ok"
