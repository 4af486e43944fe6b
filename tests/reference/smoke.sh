#!/usr/bin/env bash
# End-to-end smoke test of the reference peers and attestgate on fresh keys and evidence:
# witness-style run -> sign policy -> verify, with both go-witness v0.12.0 and v0.10.0 peers,
# then the same verify with attestgate. Also checks one known difference (§5.13: a step with an
# empty `attestations` list passes on v0.10.0 and fails on v0.12.0).
#
#   bash tests/reference/smoke.sh [ATTESTGATE_BINARY]
#
# Needs the peers from .ci/peers.sh (found through $ATTESTGATE_PEERS/peers.env), openssl, git,
# python3. Uses no network. Prints "N passed, N failed"; exits non-zero on any failure.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
peers=${ATTESTGATE_PEERS:-$HOME/.cache/attestgate-peers}
# shellcheck disable=SC1091
source "$peers/peers.env"
attestgate=${1:-$repo/target/debug/attestgate}

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"

passed=0
failed=0
expect() { # WANT_RC DESCRIPTION CMD...
  local want=$1 what=$2 rc=0
  shift 2
  "$@" >"$work/last.out" 2>"$work/last.err" || rc=$?
  if [[ $rc == "$want" ]]; then
    passed=$((passed + 1))
    echo "ok   $what (exit $rc)"
  else
    failed=$((failed + 1))
    echo "FAIL $what: exit $rc, wanted $want"
    sed 's/^/     /' "$work/last.err" | tail -5
  fi
}

openssl genpkey -algorithm ed25519 -out key.pem
openssl pkey -in key.pem -pubout -out pub.pem
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out policykey.pem
openssl pkey -in policykey.pem -pubout -out policypub.pem
kid=$(sha256sum pub.pem | cut -d' ' -f1)
expect 0 "keyid of pub.pem equals sha256sum pub.pem" \
  bash -c "[[ \$('$WITNESS_V012' keyid pub.pem | cut -d' ' -f1) == $kid ]]"

write_policy() { # FILE ATTESTATIONS_JSON
  cat >"$1" <<EOF
{
  "expires": "2035-01-01T00:00:00Z",
  "steps": {
    "build": {
      "name": "build",
      "attestations": $2,
      "functionaries": [{"type": "publickey", "publickeyid": "$kid"}]
    }
  },
  "publickeys": {"$kid": {"keyid": "$kid", "key": "$(base64 -w0 pub.pem)"}}
}
EOF
}
write_policy policy.json '[
        {"type": "https://witness.dev/attestations/material/v0.1"},
        {"type": "https://witness.dev/attestations/command-run/v0.1"},
        {"type": "https://witness.dev/attestations/product/v0.1"}]'
write_policy policy-empty.json '[]'

for name in V012 V010; do
  w_var=WITNESS_$name
  w=${!w_var}
  mkdir -p "$name/build"
  (cd "$name/build" && git init -q . &&
    git -c user.email=t@example.invalid -c user.name=t commit -q --allow-empty -m init)
  expect 0 "$name run (default attestors environment,git in a git repo)" \
    bash -c "cd '$name/build' && '$w' run -s build -k ../../key.pem -o ../out.json -- sh -c 'echo hi > hello.txt'"
  subject=$(sha256sum "$name/build/hello.txt" | cut -d' ' -f1)
  expect 0 "$name sign policy" "$w" sign -k policykey.pem -f policy.json -o "$name/policy-signed.json"
  expect 0 "$name sign empty-attestations policy" "$w" sign -k policykey.pem -f policy-empty.json -o "$name/policy-empty-signed.json"
  expect 0 "$name verify" "$w" verify -p "$name/policy-signed.json" -k policypub.pem -a "$name/out.json" -s "$subject"
  expect 0 "$name verify -f artifact" "$w" verify -p "$name/policy-signed.json" -k policypub.pem -a "$name/out.json" -f "$name/build/hello.txt"
  expect 1 "$name verify, unknown subject" "$w" verify -p "$name/policy-signed.json" -k policypub.pem -a "$name/out.json" -s "$(printf '0%.0s' {1..64})"
  expect 1 "$name verify, wrong policy key" "$w" verify -p "$name/policy-signed.json" -k pub.pem -a "$name/out.json" -s "$subject"
  if [[ $name == V012 ]]; then want_empty=1; else want_empty=0; fi
  expect "$want_empty" "$name verify, step with empty attestations (§5.13)" \
    "$w" verify -p "$name/policy-empty-signed.json" -k policypub.pem -a "$name/out.json" -s "$subject"
  if [[ -x $attestgate ]]; then
    expect 0 "attestgate verify on $name evidence" "$attestgate" verify -p "$name/policy-signed.json" -k policypub.pem -a "$name/out.json" -s "$subject"
    expect 1 "attestgate verify on $name evidence, unknown subject" "$attestgate" verify -p "$name/policy-signed.json" -k policypub.pem -a "$name/out.json" -s "$(printf '0%.0s' {1..64})"
  fi
done

echo "$passed passed, $failed failed"
((failed == 0))
