#!/usr/bin/env bash
# regenerate.sh [OUTDIR]
#
# Rebuilds every generated file of the demo from scratch into OUTDIR (default: this folder):
# new keys (openssl), the OCI image layout, the policy signed with the new policy key, the
# build evidence signed with the new build key, the AdmissionReviews and demo.json. The private
# keys are made in a temporary folder and deleted at the end: nobody can sign anything more
# that the bundled demo trusts. Needs openssl and python3 (standard library only); nothing of
# attestgate is used, so the demo data is an independent check of attestgate.
#
# The policy expires at 2036-01-01T00:00:00Z (make_demo.py, EXPIRES): rerun this script before
# then. The images are deterministic (same bytes, same digests on every run); the signatures
# and key ids change with every run.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
out=${1:-$here}

for tool in openssl python3; do
  command -v "$tool" >/dev/null || {
    echo "regenerate.sh: $tool is not installed (Debian: apt-get install $tool)" >&2
    exit 2
  }
done

mkdir -p "$out"
out=$(cd "$out" && pwd)
keys=$(mktemp -d)
trap 'rm -rf "$keys"' EXIT

# Only the files this script writes are removed first.
rm -rf "$out/images" "$out/evidence" "$out/reviews"
rm -f "$out/policy.json" "$out/policy-signed.json" "$out/policy-pubkey.pem" \
  "$out/build-pubkey.pem" "$out/demo.json"

for name in policy build oidc; do
  openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$keys/$name.key.pem" 2>/dev/null
  openssl pkey -in "$keys/$name.key.pem" -pubout -out "$keys/$name.pub.pem"
done

echo "regenerate.sh: writing the demo into $out"
python3 "$here/make_demo.py" "$out" "$keys" "$here"
if [[ "$out" != "$here" ]]; then
  cp "$here/config.yaml" "$out/config.yaml"
fi
echo "regenerate.sh: done; the private keys are deleted"
