#!/usr/bin/env bash
# smoke-cluster.sh [DIR]
#
# Proves that the real kube-apiserver of start-cluster.sh calls a validating webhook that
# listens on a loopback URL, the way the end-to-end tests will register attestgate:
#   1. starts the cluster from DIR (default: a new temporary directory) unless it runs already;
#   2. starts a tiny HTTPS webhook (python3 standard library, written to DIR/smoke/webhook.py) on
#      a free port of 127.0.0.1, with its own CA; `/validate/enforce` denies Pod and Deployment
#      CREATEs (unless the object has the label smoke.attestgate.test/admit=yes) and every
#      ephemeral-container update; `/validate/warn` allows with a warning. Each review it gets
#      is logged, one JSON line each, to DIR/smoke/reviews.jsonl, and kept whole in
#      DIR/smoke/reviews/NNN-MODE-OPERATION[-SUBRESOURCE].json;
#   3. registers a ValidatingWebhookConfiguration with `clientConfig.url` and `caBundle`, one
#      webhook per mode, selected by the namespace label attestgate.dev/smoke=enforce|warn;
#   4. checks with kubectl: refusal with the webhook's message, `--dry-run=server` reaching the
#      webhook (dryRun=true), an unlabelled namespace untouched, a warning printed, `kubectl
#      debug` (pods/ephemeralcontainers) judged, the tenant user authenticated but without
#      rights, and fail-closed once the webhook is gone.
# Stops what it started (the cluster only if it started it). Prints each check and the time.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source=tests/peers/lib.sh
source "$here/lib.sh"

total_start=$(now)
if [[ $# -ge 1 ]]; then
  mkdir -p "$1"
  DIR="$(cd "$1" && pwd)"
else
  DIR=$(mktemp -d /tmp/attestgate-cluster.XXXXXX)
fi
started_cluster=0
if ! pid_alive "$DIR" kube-apiserver; then
  "$here/start-cluster.sh" "$DIR"
  started_cluster=1
fi
# shellcheck disable=SC1091
source "$DIR/cluster.env"
export KUBECONFIG
S="$DIR/smoke"
mkdir -p "$S"
k() { "$KUBECTL" --request-timeout=20s "$@"; }

cleanup() {
  local rc=$?
  if pid_alive "$DIR" smoke-webhook; then
    kill "$(read_pid "$DIR" smoke-webhook)" 2>/dev/null || true
    rm -f "$DIR/pids/smoke-webhook.pid"
  fi
  k delete validatingwebhookconfiguration attestgate-smoke --ignore-not-found >/dev/null 2>&1 || true
  if [[ -n "${run:-}" ]] && ((!started_cluster)); then
    k delete namespace "$NS_E" "$NS_W" "$NS_P" --wait=false >/dev/null 2>&1 || true
  fi
  if ((started_cluster)); then
    "$here/stop.sh" "$DIR" >/dev/null
  fi
  if ((rc)); then
    echo "smoke-cluster: FAILED (logs in $DIR/logs, reviews in $S/reviews.jsonl)" >&2
  fi
}
trap cleanup EXIT

passed=0
ok() {
  passed=$((passed + 1))
  echo "  ok: $*"
}
fail() {
  echo "  FAILED: $*" >&2
  exit 1
}
# expect_refused DESCRIPTION NEEDLE -- KUBECTL-ARGS...: the command fails and says NEEDLE.
expect_refused() {
  local what=$1 needle=$2 out
  shift 3
  if out=$(k "$@" 2>&1); then
    fail "$what: was accepted: $out"
  fi
  [[ "$out" == *"$needle"* ]] || fail "$what: refused, but without '$needle': $out"
  ok "$what: $(grep -m1 -F "$needle" <<<"$out")"
}

# ---- the webhook server -------------------------------------------------------------------------
t=$(now)
if [[ ! -s "$S/server.pem" ]]; then
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 30 \
    -keyout "$S/ca.key" -out "$S/ca.pem" -subj "/CN=attestgate smoke webhook CA" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign" 2>/dev/null
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$S/server.key" \
    -out "$S/server.csr" -subj "/CN=127.0.0.1" 2>/dev/null
  printf '%s\n' "subjectAltName=IP:127.0.0.1" "extendedKeyUsage=serverAuth" \
    "basicConstraints=critical,CA:FALSE" >"$S/server.ext"
  openssl x509 -req -in "$S/server.csr" -CA "$S/ca.pem" -CAkey "$S/ca.key" -CAcreateserial \
    -days 30 -extfile "$S/server.ext" -out "$S/server.pem" 2>/dev/null
fi
cat >"$S/webhook.py" <<'EOF'
# A minimal validating admission webhook for smoke-cluster.sh (HTTPS, standard library only).
import json, ssl, sys, threading
from urllib.parse import urlsplit
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

port, cert, key, log_path, full_dir = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5]

lock = threading.Lock()

class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        review = json.loads(body)
        req = review["request"]
        obj = req.get("object") or {}
        labels = (obj.get("metadata") or {}).get("labels") or {}
        # The apiserver appends ?timeout=<timeoutSeconds>s to the URL.
        mode = urlsplit(self.path).path.rsplit("/", 1)[-1]
        sub = req.get("subResource", "")
        what = f'{req["kind"]["kind"]} {req.get("namespace")}/{req.get("name") or (obj.get("metadata") or {}).get("generateName", "")}'
        response = {"uid": req["uid"], "allowed": True}
        if mode == "enforce":
            if sub == "ephemeralcontainers":
                msg = f"attestgate-smoke: ephemeral container refused on {what}"
            elif labels.get("smoke.attestgate.test/admit") == "yes":
                msg = None
            else:
                msg = f'attestgate-smoke: {req["operation"]} {what} refused (dryRun={str(req.get("dryRun", False)).lower()})'
            if msg:
                response = {"uid": req["uid"], "allowed": False, "status": {"code": 403, "message": msg}}
        elif mode == "warn":
            response["warnings"] = [f"attestgate-smoke: {what} would be refused"]
        # The whole review too, one file each (handy as a fixture): NNN-mode-operation[-sub].json
        with lock, open(log_path, "a+") as f:
            f.seek(0)
            n = sum(1 for _ in f)
            name = f'{n:03d}-{mode}-{req["operation"].lower()}{"-" + sub if sub else ""}.json'
            with open(f"{full_dir}/{name}", "wb") as g:
                g.write(body)
            f.write(json.dumps({"mode": mode, "operation": req["operation"], "kind": req["kind"]["kind"],
                                "subResource": sub, "namespace": req.get("namespace"), "name": req.get("name"),
                                "dryRun": req.get("dryRun", False), "user": req["userInfo"].get("username"),
                                "allowed": response["allowed"]}) + "\n")
        out = json.dumps({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": response}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)

ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(cert, key)
server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
server.socket = ctx.wrap_socket(server.socket, server_side=True)
server.serve_forever()
EOF
WPORT=$(free_port)
: >"$S/reviews.jsonl"
rm -rf "$S/reviews"
mkdir -p "$S/reviews"
PY=$(python3 -c 'import os, sys; print(os.path.realpath(sys.executable))')
env -i PATH=/usr/bin:/bin "$PY" "$S/webhook.py" "$WPORT" "$S/server.pem" "$S/server.key" \
  "$S/reviews.jsonl" "$S/reviews" >"$DIR/logs/smoke-webhook.log" 2>&1 </dev/null &
wpid=$!
record_pid "$DIR" smoke-webhook "$wpid" "$PY"
webhook_up() { curl -s -o /dev/null --max-time 2 --cacert "$S/ca.pem" "https://127.0.0.1:$WPORT/"; }
wait_until 20 smoke-webhook "$wpid" "$DIR/logs/smoke-webhook.log" -- webhook_up
echo "webhook: https://127.0.0.1:$WPORT (pid $wpid, $(elapsed "$t") s)"

# ---- registration --------------------------------------------------------------------------------
CA_BUNDLE=$(base64 -w0 "$S/ca.pem")
webhook_yaml() { # MODE FAILURE_POLICY
  cat <<EOF
- name: $1.smoke.attestgate.test
  clientConfig:
    url: https://127.0.0.1:$WPORT/validate/$1
    caBundle: $CA_BUNDLE
  rules:
  - apiGroups: [""]
    apiVersions: ["v1"]
    operations: ["CREATE", "UPDATE"]
    resources: ["pods", "pods/ephemeralcontainers"]
    scope: Namespaced
  - apiGroups: ["apps"]
    apiVersions: ["v1"]
    operations: ["CREATE", "UPDATE"]
    resources: ["deployments"]
    scope: Namespaced
  namespaceSelector:
    matchLabels:
      attestgate.dev/smoke: $1
  failurePolicy: $2
  sideEffects: None
  admissionReviewVersions: ["v1"]
  timeoutSeconds: 5
EOF
}
{
  printf 'apiVersion: admissionregistration.k8s.io/v1\nkind: ValidatingWebhookConfiguration\n'
  printf 'metadata:\n  name: attestgate-smoke\nwebhooks:\n'
  webhook_yaml enforce Fail
  webhook_yaml warn Ignore
} >"$S/vwc.yaml"
k apply -f "$S/vwc.yaml" >/dev/null
# Namespaces of this run (a DIR whose cluster still runs can be smoked again).
run=$(openssl rand -hex 3)
NS_E=smoke-enforce-$run NS_W=smoke-warn-$run NS_P=smoke-plain-$run
k create namespace "$NS_E" >/dev/null
k create namespace "$NS_W" >/dev/null
k create namespace "$NS_P" >/dev/null
k label namespace "$NS_E" attestgate.dev/smoke=enforce >/dev/null
k label namespace "$NS_W" attestgate.dev/smoke=warn >/dev/null

pod_yaml() { # NAME [LABEL]
  cat <<EOF
apiVersion: v1
kind: Pod
metadata:
  name: $1
  labels: {app: smoke${2:+, $2}}
spec:
  containers:
  - name: main
    image: 127.0.0.1:5000/smoke/app:v1
EOF
}
pod_yaml p1 >"$S/p1.yaml"
pod_yaml p2 >"$S/p2.yaml"
pod_yaml target "smoke.attestgate.test/admit: \"yes\"" >"$S/target.yaml"

if [[ -n "${KUBE_CONTROLLER_MANAGER_PID:-}" ]]; then
  for ns in "$NS_E" "$NS_W" "$NS_P"; do
    sa() { k -n "$ns" get serviceaccount default; }
    wait_until 30 "default ServiceAccount in $ns" "$KUBE_CONTROLLER_MANAGER_PID" "$DIR/logs/kube-controller-manager.log" -- sa
  done
fi
# The apiserver picks a new webhook configuration up through an informer: wait (bounded) for the
# first refusal instead of sleeping.
t=$(now)
registered() { ! k -n "$NS_E" create -f "$S/p1.yaml" --dry-run=server >/dev/null 2>&1; }
wait_until 30 "webhook registration" "$wpid" "$DIR/logs/smoke-webhook.log" -- registered
echo "registration effective after $(elapsed "$t") s"

# ---- checks --------------------------------------------------------------------------------------
echo "checks:"
t=$(now)
expect_refused "Pod in the enforce namespace" \
  "admission webhook \"enforce.smoke.attestgate.test\" denied the request: attestgate-smoke: CREATE Pod $NS_E/p1 refused (dryRun=false)" \
  -- -n "$NS_E" create -f "$S/p1.yaml"
k -n "$NS_E" get pod p1 >/dev/null 2>&1 && fail "p1 exists after the refusal"
ok "the refused Pod does not exist"

expect_refused "Pod with --dry-run=server" "refused (dryRun=true)" \
  -- -n "$NS_E" create -f "$S/p1.yaml" --dry-run=server

expect_refused "Deployment in the enforce namespace" \
  "attestgate-smoke: CREATE Deployment $NS_E/d1 refused" \
  -- -n "$NS_E" create deployment d1 --image=127.0.0.1:5000/smoke/app:v1

out=$(k -n "$NS_P" create -f "$S/p1.yaml" 2>&1) || fail "Pod in the unlabelled namespace: $out"
ok "Pod in the unlabelled namespace: $out"
phase=$(k -n "$NS_P" get pod p1 -o jsonpath='{.status.phase}')
[[ "$phase" == Pending ]] || fail "unexpected phase $phase"
ok "it stays $phase (no nodes)"

out=$(k -n "$NS_W" create -f "$S/p1.yaml" 2>&1) || fail "Pod in the warn namespace: $out"
[[ "$out" == *"Warning: attestgate-smoke: Pod $NS_W/p1 would be refused"* ]] ||
  fail "no warning printed: $out"
ok "Pod in the warn namespace: created, kubectl printed: $(grep -m1 Warning <<<"$out")"

# kubectl debug: an ephemeral container goes through the pods/ephemeralcontainers subresource.
# Plain namespace (no webhook): it is stored although no kubelet will ever run it.
out=$(k -n "$NS_P" debug p1 --image=127.0.0.1:5000/smoke/debug:v1 --container=dbg --profile=general 2>&1) ||
  fail "kubectl debug in the plain namespace: $out"
eph=$(k -n "$NS_P" get pod p1 -o jsonpath='{.spec.ephemeralContainers[*].name}')
[[ "$eph" == dbg ]] || fail "ephemeral container not stored: '$eph' ($out)"
ok "kubectl debug in the unlabelled namespace: ephemeral container '$eph' stored"
# Enforce namespace: the target Pod is admitted by its label, the debug container is refused.
out=$(k -n "$NS_E" create -f "$S/target.yaml" 2>&1) || fail "admitted target Pod: $out"
ok "Pod with the admit label in the enforce namespace: $out"
expect_refused "kubectl debug in the enforce namespace" \
  "attestgate-smoke: ephemeral container refused on Pod $NS_E/target" \
  -- -n "$NS_E" debug target --image=127.0.0.1:5000/smoke/debug:v1 --container=dbg --profile=general
eph=$(k -n "$NS_E" get pod target -o jsonpath='{.spec.ephemeralContainers[*].name}')
[[ -z "$eph" ]] || fail "refused ephemeral container was stored: $eph"
ok "the refused ephemeral container was not stored"

grep -q '"subResource": "ephemeralcontainers", "namespace": "'"$NS_E"'", "name": "target", "dryRun": false' "$S/reviews.jsonl" ||
  fail "no ephemeralcontainers review logged"
ok "the webhook saw operation=$(python3 -c 'import json,sys
for l in open(sys.argv[1]):
    r = json.loads(l)
    if r["subResource"] == "ephemeralcontainers": print(r["operation"]); break' "$S/reviews.jsonl") subResource=ephemeralcontainers"

# The tenant: authenticated by its certificate, in its group, without rights.
out=$(KUBECONFIG="$KUBECONFIG_TENANT" k auth whoami -o jsonpath='{.status.userInfo.username} {.status.userInfo.groups}' 2>&1) ||
  fail "tenant whoami: $out"
[[ "$out" == "$TENANT_USER "*"$TENANT_GROUP"* ]] || fail "tenant identity: $out"
ok "tenant whoami: $out"
expect_refused "tenant lists Pods" "is forbidden" -- --kubeconfig "$KUBECONFIG_TENANT" -n "$NS_P" get pods

# Fail closed: with the webhook gone, enforce (failurePolicy Fail) refuses, warn (Ignore) admits.
kill "$wpid"
wait "$wpid" 2>/dev/null || true
rm -f "$DIR/pids/smoke-webhook.pid"
expect_refused "enforce namespace with the webhook down" 'failed calling webhook "enforce.smoke.attestgate.test"' \
  -- -n "$NS_E" create -f "$S/p1.yaml"
out=$(k -n "$NS_W" create -f "$S/p2.yaml" 2>&1) || fail "warn namespace, webhook down: $out"
ok "warn namespace with the webhook down (failurePolicy Ignore): $out"
echo "checks took $(elapsed "$t") s"

echo "smoke-cluster: all $passed checks passed in $(elapsed "$total_start") s"
