#!/usr/bin/env bash
# smoke-archivista.sh PORT [ENVELOPE]
#
# Proves an Archivista started by start-archivista.sh works, with a real witness envelope read in
# place (default: the shared fixture 01-archivista-keypair-multistep/build.attestation.json):
#   1. POST /upload of the file's exact bytes returns the gitoid computed locally (evidence-format
#      §6.4: sha256("blob <len>\0" + bytes)); if that gitoid is already stored (a second run on the
#      same DIR), the upload's HTTP 500 "duplicate key" is expected and accepted;
#   2. the §6.5 GraphQL search (step name + product digest + attestation type) returns the gitoid;
#   3. GET /download/<gitoid> gives back the same bytes;
#   4. GET /download/<unknown gitoid> is not 200.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source=tests/peers/lib.sh
source "$here/lib.sh"

[[ $# -ge 1 ]] || die "usage: $0 PORT [ENVELOPE]"
PORT=$1
check_port_arg "$PORT"
DEFAULT_ENVELOPE="$here/../../../shared/fixtures/real/witness/01-archivista-keypair-multistep/build.attestation.json"
ENVELOPE="${2:-$DEFAULT_ENVELOPE}"
[[ -f "$ENVELOPE" ]] || die "no envelope at $ENVELOPE"
URL="http://127.0.0.1:$PORT"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# Local facts: gitoid, collection name, first subject's first sha256 digest, an attestation type.
read -r gitoid step digest type < <(python3 - "$ENVELOPE" <<'EOF'
import base64, hashlib, json, sys
raw = open(sys.argv[1], "rb").read()
gitoid = hashlib.sha256(b"blob %d\0" % len(raw) + raw).hexdigest()
statement = json.loads(base64.b64decode(json.loads(raw)["payload"]))
digest = next(s["digest"]["sha256"] for s in statement["subject"] if "sha256" in s["digest"])
collection = statement["predicate"]
print(gitoid, collection["name"], digest, collection["attestations"][-1]["type"])
EOF
)
echo "local: gitoid=$gitoid step=$step digest=$digest type=$type"

code=$(curl -sS -o "$work/upload" -w '%{http_code}' -X POST --data-binary "@$ENVELOPE" "$URL/upload")
if [[ "$code" == 200 ]]; then
  got=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["gitoid"])' "$work/upload")
  [[ "$got" == "$gitoid" ]] || die "upload returned gitoid $got, expected $gitoid"
  echo "ok upload: gitoid $got"
elif [[ "$code" == 500 ]] && grep -q 'duplicate key' "$work/upload"; then
  echo "ok upload: already stored (HTTP 500: $(head -c 200 "$work/upload"))"
else
  die "upload: HTTP $code: $(head -c 500 "$work/upload")"
fi

python3 - "$digest" "$type" "$step" >"$work/query.json" <<'EOF'
import json, sys
digest, typ, step = sys.argv[1:]
query = """query FindCollections($digests: [String!], $types: [String!], $step: String!, $seen: [String!]) {
  dsses(where: {
    gitoidSha256NotIn: $seen
    hasStatementWith: {
      hasSubjectsWith: { hasSubjectDigestsWith: { valueIn: $digests } }
      hasAttestationCollectionsWith: { name: $step hasAttestationsWith: { typeIn: $types } }
    }
  }) { edges { node { gitoidSha256 } } }
}"""
print(json.dumps({"query": query, "variables": {"digests": [digest], "types": [typ], "step": step,
                                                "seen": ["0" * 64]}}))
EOF
code=$(curl -sS -o "$work/search" -w '%{http_code}' -H 'Content-Type: application/json' \
  --data "@$work/query.json" "$URL/query")
[[ "$code" == 200 ]] || die "query: HTTP $code: $(head -c 500 "$work/search")"
python3 - "$work/search" "$gitoid" <<'EOF' || die "search did not find $gitoid: $(cat "$work/search")"
import json, sys
answer = json.load(open(sys.argv[1]))
assert not answer.get("errors"), answer["errors"]
found = [e["node"]["gitoidSha256"] for e in answer["data"]["dsses"]["edges"]]
assert sys.argv[2] in found, found
print("ok search: step+digest+type finds", found)
EOF

code=$(curl -sS -o "$work/download" -w '%{http_code}' "$URL/download/$gitoid")
[[ "$code" == 200 ]] || die "download: HTTP $code"
cmp -s "$work/download" "$ENVELOPE" || die "download differs from the uploaded file"
echo "ok download: $(wc -c <"$work/download") bytes, byte-identical"
if ! curl -sSf -o "$work/download-v1" "$URL/v1/download/$gitoid" ||
  ! cmp -s "$work/download-v1" "$ENVELOPE"; then
  die "GET /v1/download/$gitoid differs"
fi
echo "ok /v1/download: byte-identical too"

code=$(curl -sS -o "$work/missing" -w '%{http_code}' "$URL/download/$(printf '0%.0s' {1..64})")
[[ "$code" != 200 ]] || die "download of an unknown gitoid answered 200"
echo "ok unknown gitoid: HTTP $code ($(head -c 120 "$work/missing"))"
echo "archivista smoke: all ok"
