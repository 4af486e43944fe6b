#!/usr/bin/env bash
# start-registry.sh DIR PORT [--auth htpasswd|token] [--tls]   (PORT 0: a free port)
#
# Starts Debian's docker-registry (distribution 2.8) on 127.0.0.1:PORT with its own config and
# storage under DIR/registry (never /etc/docker/registry/config.yml, which listens on :5000 on
# every interface). Default: plain HTTP, no auth.
#   --auth htpasswd  basic auth; bcrypt htpasswd file made with python3 `bcrypt` if importable,
#                    else `htpasswd -B` (apache2-utils)
#   --auth token     bearer-token auth; also starts tests/peers/token-server.py on a free port
#                    of 127.0.0.1 (realm .../token), which grants any scope to USER:PASSWORD
#   --tls            HTTPS with a certificate for IP 127.0.0.1 / DNS localhost, issued by a CA
#                    made here with openssl (DIR/registry/tls/ca.pem); the token server too
# Waits until /v2/ answers, writes pids into DIR/pids and the facts (URL, user, password, CA,
# a DOCKER_CONFIG directory with the login for crane) into DIR/registry.env.
# One registry per DIR. Idempotent: if it already runs from DIR with the same options it only
# says so. Stop with tests/peers/stop.sh DIR.
# Env: REGISTRY_START_TIMEOUT (seconds, default 30), REGISTRY_USER (default attestgate),
#      REGISTRY_PASSWORD (default: random, kept in DIR/registry/password).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source=tests/peers/lib.sh
source "$here/lib.sh"

usage() { die "usage: $0 DIR PORT [--auth htpasswd|token] [--tls]"; }
[[ $# -ge 2 ]] || usage
mkdir -p "$1"
DIR="$(cd "$1" && pwd)"
PORT=$2
check_port_arg "$PORT"
shift 2
AUTH=none
TLS=0
while (($#)); do
  case "$1" in
    --auth)
      [[ $# -ge 2 && ("$2" == htpasswd || "$2" == token) ]] || usage
      AUTH=$2
      shift 2
      ;;
    --tls)
      TLS=1
      shift
      ;;
    *) usage ;;
  esac
done
TIMEOUT="${REGISTRY_START_TIMEOUT:-30}"
REGISTRY_BIN=$(command -v docker-registry) || die "docker-registry missing: run .ci/peers-evidence.sh"
options="auth=$AUTH tls=$TLS"
R="$DIR/registry"

if pid_alive "$DIR" registry; then
  running_port=$(sed -n 's/^REGISTRY=127.0.0.1://p' "$DIR/registry.env" 2>/dev/null)
  if [[ "$PORT" != 0 && "$PORT" != "$running_port" ]]; then
    die "a registry from $DIR runs on port ${running_port:-?}: stop it first"
  fi
  if [[ "$(cat "$R/options" 2>/dev/null)" == "$options" ]] && port_busy "$running_port"; then
    echo "registry already running from $DIR on 127.0.0.1:$running_port ($options)"
    exit 0
  fi
  die "a registry with other options ($(cat "$R/options" 2>/dev/null)) runs from $DIR: stop it first"
fi
[[ "$PORT" != 0 ]] || PORT=$(free_port)
if port_busy "$PORT"; then
  die "127.0.0.1:$PORT is already in use"
fi

total_start=$(now)
mkdir -p "$R/data" "$DIR/pids"
chmod 700 "$R"
echo "$options" >"$R/options"
scheme=http
curl_tls=()

# ---- TLS: a CA and a server certificate for 127.0.0.1 ------------------------------------------
if ((TLS)); then
  t=$(now)
  mkdir -p "$R/tls"
  if [[ ! -s "$R/tls/server.pem" ]]; then
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 30 \
      -keyout "$R/tls/ca.key" -out "$R/tls/ca.pem" -subj "/CN=attestgate test CA" \
      -addext "basicConstraints=critical,CA:TRUE" \
      -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
      -keyout "$R/tls/server.key" -out "$R/tls/server.csr" -subj "/CN=127.0.0.1" 2>/dev/null
    printf '%s\n' "subjectAltName=IP:127.0.0.1,DNS:localhost" "extendedKeyUsage=serverAuth" \
      "basicConstraints=critical,CA:FALSE" "keyUsage=critical,digitalSignature" >"$R/tls/ext"
    openssl x509 -req -in "$R/tls/server.csr" -CA "$R/tls/ca.pem" -CAkey "$R/tls/ca.key" \
      -CAcreateserial -days 30 -extfile "$R/tls/ext" -out "$R/tls/server.pem" 2>/dev/null
    # skopeo --cert-dir / --dest-cert-dir reads CA certificates from *.crt files.
    mkdir -p "$R/tls/certs.d"
    cp "$R/tls/ca.pem" "$R/tls/certs.d/ca.crt"
  fi
  scheme=https
  curl_tls=(--cacert "$R/tls/ca.pem")
  echo "tls: CA and server certificate in $R/tls ($(elapsed "$t") s)"
fi

# ---- credentials ----------------------------------------------------------------------------
USER_NAME="${REGISTRY_USER:-attestgate}"
if [[ -n "${REGISTRY_PASSWORD:-}" ]]; then
  echo "$REGISTRY_PASSWORD" >"$R/password"
elif [[ ! -s "$R/password" ]]; then
  openssl rand -hex 12 >"$R/password"
fi
chmod 600 "$R/password"
PASSWORD=$(cat "$R/password")

auth_yaml=""
if [[ "$AUTH" == htpasswd ]]; then
  t=$(now)
  if python3 -c 'import bcrypt' 2>/dev/null; then
    python3 -c 'import bcrypt, sys; print(sys.argv[1] + ":" + bcrypt.hashpw(sys.argv[2].encode(), bcrypt.gensalt()).decode())' \
      "$USER_NAME" "$PASSWORD" >"$R/htpasswd"
    how="python3 bcrypt"
  else
    command -v htpasswd >/dev/null || die "need python3 bcrypt or htpasswd (apache2-utils)"
    htpasswd -Bbn "$USER_NAME" "$PASSWORD" | sed '/^$/d' >"$R/htpasswd"
    how="htpasswd -B"
  fi
  auth_yaml="auth:
  htpasswd:
    realm: attestgate-test-registry
    path: $R/htpasswd"
  echo "htpasswd: user $USER_NAME, bcrypt by $how ($(elapsed "$t") s)"
fi

SERVICE=attestgate-test-registry
ISSUER=attestgate-test-token-issuer
TOKEN_PORT=""
if [[ "$AUTH" == token ]]; then
  t=$(now)
  mkdir -p "$R/token"
  if [[ ! -s "$R/token/signer.pem" ]]; then
    # Self-signed signing certificate; it is its own root in the registry's rootcertbundle.
    openssl req -x509 -newkey rsa:2048 -nodes -days 30 -keyout "$R/token/signer.key" \
      -out "$R/token/signer.pem" -subj "/CN=attestgate test token signer" 2>/dev/null
  fi
  TOKEN_PORT=$(free_port)
  token_scheme=http
  token_tls=()
  if ((TLS)); then
    token_scheme=https
    token_tls=("$R/tls/server.pem" "$R/tls/server.key")
  fi
  PY=$(python3 -c 'import os, sys; print(os.path.realpath(sys.executable))')
  env -i PATH=/usr/bin:/bin TOKEN_SERVER_PASSWORD="$PASSWORD" \
    "$PY" "$here/token-server.py" "$TOKEN_PORT" "$USER_NAME" "$R/token/signer.key" \
    "$R/token/signer.pem" "$ISSUER" "$SERVICE" "${token_tls[@]}" \
    >"$R/token/log" 2>&1 </dev/null &
  tpid=$!
  record_pid "$DIR" token-server "$tpid" "$PY"
  token_ready() {
    curl -s -o /dev/null "${curl_tls[@]}" --max-time 2 "$token_scheme://127.0.0.1:$TOKEN_PORT/token"
  }
  wait_until "$TIMEOUT" token-server "$tpid" "$R/token/log" -- token_ready
  auth_yaml="auth:
  token:
    realm: $token_scheme://127.0.0.1:$TOKEN_PORT/token
    service: $SERVICE
    issuer: $ISSUER
    rootcertbundle: $R/token/signer.pem"
  echo "token server: $token_scheme://127.0.0.1:$TOKEN_PORT/token (pid $tpid, $(elapsed "$t") s)"
fi

# ---- the registry ---------------------------------------------------------------------------
tls_yaml=""
if ((TLS)); then
  tls_yaml="  tls:
    certificate: $R/tls/server.pem
    key: $R/tls/server.key"
fi
cat >"$R/config.yml" <<EOF
version: 0.1
log:
  level: info
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $R/data
  delete:
    enabled: true
http:
  addr: 127.0.0.1:$PORT
  secret: $(openssl rand -hex 16)
$tls_yaml
$auth_yaml
EOF

t=$(now)
# A clean environment: distribution reads REGISTRY_* variables as config overrides.
env -i PATH=/usr/bin:/bin "$REGISTRY_BIN" serve "$R/config.yml" >"$R/log" 2>&1 </dev/null &
rpid=$!
record_pid "$DIR" registry "$rpid" "$REGISTRY_BIN"
registry_ready() {
  local code
  code=$(curl -s -o /dev/null -w '%{http_code}' "${curl_tls[@]}" --max-time 2 \
    "$scheme://127.0.0.1:$PORT/v2/")
  [[ "$code" == 200 || "$code" == 401 ]]
}
wait_until "$TIMEOUT" registry "$rpid" "$R/log" -- registry_ready
echo "registry: ready on $scheme://127.0.0.1:$PORT in $(elapsed "$t") s (pid $rpid, $options)"

# ---- facts for the tests, and a docker config holding the login (for crane) ------------------
mkdir -p "$R/docker-config"
if [[ "$AUTH" != none ]]; then
  auth_b64=$(printf '%s:%s' "$USER_NAME" "$PASSWORD" | base64 -w0)
  printf '{"auths":{"127.0.0.1:%s":{"auth":"%s"}}}\n' "$PORT" "$auth_b64" >"$R/docker-config/config.json"
else
  echo '{"auths":{}}' >"$R/docker-config/config.json"
fi
chmod 600 "$R/docker-config/config.json"
{
  echo "REGISTRY=127.0.0.1:$PORT"
  echo "REGISTRY_URL=$scheme://127.0.0.1:$PORT"
  echo "REGISTRY_AUTH=$AUTH"
  echo "REGISTRY_TLS=$TLS"
  if [[ "$AUTH" != none ]]; then
    echo "REGISTRY_USER=$USER_NAME"
    echo "REGISTRY_PASSWORD=$PASSWORD"
  fi
  ((TLS)) && echo "REGISTRY_CA=$R/tls/ca.pem" && echo "REGISTRY_CERT_DIR=$R/tls/certs.d"
  [[ -n "$TOKEN_PORT" ]] && echo "REGISTRY_TOKEN_REALM=$token_scheme://127.0.0.1:$TOKEN_PORT/token"
  echo "DOCKER_CONFIG=$R/docker-config"
} >"$DIR/registry.env"
chmod 600 "$DIR/registry.env"
echo "started in $(elapsed "$total_start") s; facts in $DIR/registry.env"
