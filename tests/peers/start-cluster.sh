#!/usr/bin/env bash
# start-cluster.sh DIR [--no-controller-manager]
#
# Starts a real Kubernetes control plane on 127.0.0.1 with everything under DIR:
#   - etcd (Debian's etcd-server) on two free ports, plain HTTP on loopback, data in DIR/etcd;
#   - kube-apiserver on a free port, HTTPS with a certificate for 127.0.0.1 / localhost /
#     kubernetes.default.svc, client certificates against DIR/pki/ca.pem, RBAC, the admission
#     plugins the tests need (ValidatingAdmissionWebhook, ValidatingAdmissionPolicy, ...);
#   - kube-controller-manager (unless --no-controller-manager): it creates each namespace's
#     `default` ServiceAccount (without it the ServiceAccount admission plugin refuses every
#     Pod), finishes namespace deletion, and turns Deployments into ReplicaSets into Pods.
# There are no nodes, no kubelet, no scheduler and no kube-proxy: Pods stay Pending, and a
# Service cannot reach anything, so webhooks are registered with `clientConfig.url` on loopback.
#
# Writes:
#   DIR/pki/        CA (ca.pem, ca.key), apiserver serving cert, service-account key pair, and
#                   client certs: admin (O=system:masters) and tenant (O=attestgate-tenants)
#   DIR/kubeconfig         admin: CN=attestgate-admin, O=system:masters
#   DIR/kubeconfig-tenant  CN=attestgate-tenant, O=attestgate-tenants (no RBAC rights at all
#                          until a test binds some)
#   DIR/cluster.env KUBE_APISERVER_URL, KUBE_APISERVER_PORT, KUBECONFIG, KUBECONFIG_TENANT,
#                   KUBE_CA, ETCD_URL, ETCD_PEER_PORT, KUBE_{ETCD,APISERVER,CONTROLLER_MANAGER}_PID,
#                   KUBECTL, TENANT_USER, TENANT_GROUP
#   DIR/pids/{etcd,kube-apiserver,kube-controller-manager}.pid, logs in DIR/logs/
# Waits for /readyz (and, with the controller manager, for the `default` ServiceAccount).
# Idempotent: if the apiserver from DIR runs, it only says so. A stopped DIR restarts with its
# data and certificates kept (new ports). Stop with tests/peers/stop.sh DIR.
# Env: CLUSTER_START_TIMEOUT (seconds, default 90), ATTESTGATE_PEERS (binaries in its bin/),
#      TENANT_GROUP (default attestgate-tenants), KUBE_APISERVER_EXTRA_ARGS (word-split, appended).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source=tests/peers/lib.sh
source "$here/lib.sh"

usage() { die "usage: $0 DIR [--no-controller-manager]"; }
[[ $# -ge 1 ]] || usage
mkdir -p "$1"
DIR="$(cd "$1" && pwd)"
shift
WITH_KCM=1
while (($#)); do
  case "$1" in
    --no-controller-manager) WITH_KCM=0 ;;
    *) usage ;;
  esac
  shift
done
TIMEOUT="${CLUSTER_START_TIMEOUT:-90}"
TENANT_USER=attestgate-tenant
TENANT_GROUP="${TENANT_GROUP:-attestgate-tenants}"
SERVICE_CIDR=10.96.0.0/16 # never routed: no kube-proxy; only a range the apiserver allocates from

for b in etcd kube-apiserver kubectl; do
  [[ -x "$PEERS_BIN/$b" ]] || die "$PEERS_BIN/$b missing: run .ci/peers-cluster.sh"
done
if ((WITH_KCM)); then
  [[ -x "$PEERS_BIN/kube-controller-manager" ]] ||
    die "$PEERS_BIN/kube-controller-manager missing: run .ci/peers-cluster.sh"
fi
ETCD_BIN=$(readlink -f "$PEERS_BIN/etcd")
APISERVER_BIN=$(readlink -f "$PEERS_BIN/kube-apiserver")
KCM_BIN=$(readlink -f "$PEERS_BIN/kube-controller-manager" 2>/dev/null || true)
KUBECTL=$(readlink -f "$PEERS_BIN/kubectl")

if pid_alive "$DIR" kube-apiserver && [[ -s "$DIR/cluster.env" ]]; then
  port=$(sed -n 's/^KUBE_APISERVER_PORT=//p' "$DIR/cluster.env")
  if [[ -n "$port" ]] && port_busy "$port"; then
    echo "cluster already running from $DIR (kube-apiserver on https://127.0.0.1:$port)"
    exit 0
  fi
fi

total_start=$(now)
P="$DIR/pki"
mkdir -p "$P" "$DIR/logs" "$DIR/pids"
chmod 700 "$P"

# ---- certificates (made once per DIR) ---------------------------------------------------------
# sign NAME SUBJECT EXTENSIONS...: an EC P-256 key and a certificate issued by the CA.
sign() {
  local name=$1 subj=$2
  shift 2
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$P/$name.key" \
    -out "$P/$name.csr" -subj "$subj" 2>/dev/null
  printf '%s\n' "$@" >"$P/$name.ext"
  openssl x509 -req -in "$P/$name.csr" -CA "$P/ca.pem" -CAkey "$P/ca.key" -CAcreateserial \
    -days 30 -extfile "$P/$name.ext" -out "$P/$name.pem" 2>/dev/null
  rm -f "$P/$name.csr"
}
if [[ ! -s "$P/tenant.pem" ]]; then
  t=$(now)
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 30 \
    -keyout "$P/ca.key" -out "$P/ca.pem" -subj "/CN=attestgate test cluster CA" \
    -addext "basicConstraints=critical,CA:TRUE" \
    -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
  # 10.96.0.1 is the `kubernetes` Service's ClusterIP in SERVICE_CIDR: a name in the
  # certificate only, never an address anything connects to here.
  sign apiserver "/CN=kube-apiserver" \
    "subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local,IP:10.96.0.1" \
    "extendedKeyUsage=serverAuth" "basicConstraints=critical,CA:FALSE" \
    "keyUsage=critical,digitalSignature"
  client_ext=("extendedKeyUsage=clientAuth" "basicConstraints=critical,CA:FALSE"
    "keyUsage=critical,digitalSignature")
  sign admin "/O=system:masters/CN=attestgate-admin" "${client_ext[@]}"
  sign kcm "/CN=system:kube-controller-manager" "${client_ext[@]}"
  # The service-account signing key (RS256, the default algorithm of the token issuer).
  openssl genrsa -out "$P/sa.key" 2048 2>/dev/null
  openssl rsa -in "$P/sa.key" -pubout -out "$P/sa.pub" 2>/dev/null
  sign tenant "/O=$TENANT_GROUP/CN=$TENANT_USER" "${client_ext[@]}"
  chmod 600 "$P"/*.key
  echo "pki: CA, apiserver, admin, tenant and service-account keys in $P ($(elapsed "$t") s)"
fi

# write_kubeconfig FILE USER CERTNAME PORT: a self-contained kubeconfig (certificates inline).
write_kubeconfig() {
  local file=$1 user=$2 cert=$3 port=$4
  cat >"$file" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: attestgate-test
  cluster:
    server: https://127.0.0.1:$port
    certificate-authority-data: $(base64 -w0 "$P/ca.pem")
users:
- name: $user
  user:
    client-certificate-data: $(base64 -w0 "$P/$cert.pem")
    client-key-data: $(base64 -w0 "$P/$cert.key")
contexts:
- name: $user@attestgate-test
  context:
    cluster: attestgate-test
    user: $user
    namespace: default
current-context: $user@attestgate-test
EOF
  chmod 600 "$file"
}

# ---- etcd -----------------------------------------------------------------------------------------
mkdir -p "$DIR/etcd"
chmod 700 "$DIR/etcd"
if pid_alive "$DIR" etcd && [[ -s "$DIR/etcd/client.port" ]] && port_busy "$(cat "$DIR/etcd/client.port")"; then
  ETCD_PORT=$(cat "$DIR/etcd/client.port")
  ETCD_PEER_PORT=$(cat "$DIR/etcd/peer.port")
  echo "etcd already running (pid $(read_pid "$DIR" etcd), 127.0.0.1:$ETCD_PORT)"
else
  t=$(now)
  # Ports: those of the last run from DIR when they are still free (a restarted member keeps
  # its stored peer URL), else new free ones.
  ETCD_PORT=$(cat "$DIR/etcd/client.port" 2>/dev/null || true)
  ETCD_PEER_PORT=$(cat "$DIR/etcd/peer.port" 2>/dev/null || true)
  if [[ -z "$ETCD_PORT" ]] || port_busy "$ETCD_PORT"; then ETCD_PORT=$(free_port); fi
  if [[ -z "$ETCD_PEER_PORT" ]] || port_busy "$ETCD_PEER_PORT" || [[ "$ETCD_PEER_PORT" == "$ETCD_PORT" ]]; then
    ETCD_PEER_PORT=$(free_port)
    while [[ "$ETCD_PEER_PORT" == "$ETCD_PORT" ]]; do ETCD_PEER_PORT=$(free_port); done
  fi
  echo "$ETCD_PORT" >"$DIR/etcd/client.port"
  echo "$ETCD_PEER_PORT" >"$DIR/etcd/peer.port"
  # A clean environment: etcd reads ETCD_* variables as flags.
  env -i PATH=/usr/bin:/bin "$ETCD_BIN" \
    --name attestgate-test \
    --data-dir "$DIR/etcd/data" \
    --listen-client-urls "http://127.0.0.1:$ETCD_PORT" \
    --advertise-client-urls "http://127.0.0.1:$ETCD_PORT" \
    --listen-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
    --initial-advertise-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
    --initial-cluster "attestgate-test=http://127.0.0.1:$ETCD_PEER_PORT" \
    --initial-cluster-state new \
    --unsafe-no-fsync \
    --quota-backend-bytes $((512 * 1024 * 1024)) \
    >"$DIR/logs/etcd.log" 2>&1 </dev/null &
  epid=$!
  record_pid "$DIR" etcd "$epid" "$ETCD_BIN"
  etcd_ready() { curl -sf --max-time 2 "http://127.0.0.1:$ETCD_PORT/health" | grep -q '"health":"true"'; }
  wait_until "$TIMEOUT" etcd "$epid" "$DIR/logs/etcd.log" -- etcd_ready
  echo "etcd: ready on http://127.0.0.1:$ETCD_PORT in $(elapsed "$t") s (pid $epid)"
fi

# ---- kube-apiserver ---------------------------------------------------------------------------------
stop_stale() { # NAME: a recorded process of DIR that is still alive but will be replaced
  if pid_alive "$DIR" "$1"; then
    kill "$(read_pid "$DIR" "$1")" 2>/dev/null || true
    sleep 1
  fi
  rm -f "$DIR/pids/$1.pid"
}
stop_stale kube-apiserver
t=$(now)
PORT=$(free_port)
write_kubeconfig "$DIR/kubeconfig" attestgate-admin admin "$PORT"
write_kubeconfig "$DIR/kubeconfig-tenant" "$TENANT_USER" tenant "$PORT"
write_kubeconfig "$DIR/pki/kcm.kubeconfig" system:kube-controller-manager kcm "$PORT"
# shellcheck disable=SC2206 # word splitting of the extra args is wanted
extra=(${KUBE_APISERVER_EXTRA_ARGS:-})
env -i PATH=/usr/bin:/bin HOME="$DIR" "$APISERVER_BIN" \
  --bind-address=127.0.0.1 \
  --advertise-address=127.0.0.1 \
  --secure-port="$PORT" \
  --cert-dir="$DIR/pki" \
  --tls-cert-file="$P/apiserver.pem" \
  --tls-private-key-file="$P/apiserver.key" \
  --client-ca-file="$P/ca.pem" \
  --etcd-servers="http://127.0.0.1:$ETCD_PORT" \
  --service-account-issuer=https://kubernetes.default.svc.cluster.local \
  --service-account-key-file="$P/sa.pub" \
  --service-account-signing-key-file="$P/sa.key" \
  --service-cluster-ip-range="$SERVICE_CIDR" \
  --authorization-mode=RBAC \
  --enable-admission-plugins=NamespaceLifecycle,ServiceAccount,MutatingAdmissionWebhook,ValidatingAdmissionWebhook,ValidatingAdmissionPolicy \
  --endpoint-reconciler-type=none \
  --profiling=false \
  "${extra[@]}" \
  >"$DIR/logs/kube-apiserver.log" 2>&1 </dev/null &
apid=$!
record_pid "$DIR" kube-apiserver "$apid" "$APISERVER_BIN"
readyz() {
  [[ "$(curl -s --max-time 3 --cacert "$P/ca.pem" --cert "$P/admin.pem" --key "$P/admin.key" \
    "https://127.0.0.1:$PORT/readyz")" == ok ]]
}
wait_until "$TIMEOUT" kube-apiserver "$apid" "$DIR/logs/kube-apiserver.log" -- readyz
echo "kube-apiserver: ready on https://127.0.0.1:$PORT in $(elapsed "$t") s (pid $apid)"

# ---- kube-controller-manager --------------------------------------------------------------------------
kcm_pid=""
stop_stale kube-controller-manager
if ((WITH_KCM)); then
  t=$(now)
  # --secure-port=0: no serving port at all. Controllers that need nodes or a cloud just idle.
  # Each controller runs as its own ServiceAccount in kube-system (as kubeadm sets it up), so
  # its requests meet RBAC and admission with that identity.
  env -i PATH=/usr/bin:/bin HOME="$DIR" "$KCM_BIN" \
    --kubeconfig="$P/kcm.kubeconfig" \
    --secure-port=0 \
    --leader-elect=false \
    --use-service-account-credentials=true \
    --service-account-private-key-file="$P/sa.key" \
    --root-ca-file="$P/ca.pem" \
    --service-cluster-ip-range="$SERVICE_CIDR" \
    >"$DIR/logs/kube-controller-manager.log" 2>&1 </dev/null &
  kcm_pid=$!
  record_pid "$DIR" kube-controller-manager "$kcm_pid" "$KCM_BIN"
  default_sa() { "$KUBECTL" --kubeconfig "$DIR/kubeconfig" -n default get serviceaccount default; }
  wait_until "$TIMEOUT" kube-controller-manager "$kcm_pid" "$DIR/logs/kube-controller-manager.log" -- default_sa
  echo "kube-controller-manager: the default ServiceAccount exists after $(elapsed "$t") s (pid $kcm_pid)"
fi

cat >"$DIR/cluster.env" <<EOF
KUBE_APISERVER_URL=https://127.0.0.1:$PORT
KUBE_APISERVER_PORT=$PORT
KUBECONFIG=$DIR/kubeconfig
KUBECONFIG_TENANT=$DIR/kubeconfig-tenant
KUBE_CA=$P/ca.pem
KUBECTL=$KUBECTL
TENANT_USER=$TENANT_USER
TENANT_GROUP=$TENANT_GROUP
ETCD_URL=http://127.0.0.1:$ETCD_PORT
ETCD_PEER_PORT=$ETCD_PEER_PORT
KUBE_ETCD_PID=$(read_pid "$DIR" etcd)
KUBE_APISERVER_PID=$apid
KUBE_CONTROLLER_MANAGER_PID=$kcm_pid
EOF
echo "started in $(elapsed "$total_start") s; facts in $DIR/cluster.env"
