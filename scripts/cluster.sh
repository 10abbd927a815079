#!/usr/bin/env bash
# The scale-out on one machine: ARCP, redis-server, two gateway replicas sharing sessions
# through Redis (sessions.store.redis), and HAProxy round-robin in front.
#
#   client ──TLS──► HAProxy 127.0.0.1:${CLUSTER_PORT:-8443} (mode tcp, round robin per connection,
#                   PROXY protocol v2 to the replicas: they see each client's address)
#                      ├──► replica A 127.0.0.1:<free>  ─┐  TLS ends at the gateways (one
#                      └──► replica B 127.0.0.1:<free>  ─┤  certificate for both, made here)
#                                                       ├──► ARCP 2.1.2 (one upstream login)
#                                   redis-server 127.0.0.1:<free> (no persistence)
#
# TLS terminates at the gateways, HAProxy only passes TCP through: the gateways keep their
# HTTP/2, deadlines and header hygiene, and no certificate key sits in the balancer. (The
# gateways then see HAProxy's address as the peer; put the balancer on trusted hosts.)
# Prints what to try; Ctrl-C (or SIGTERM) stops everything. Needs redis-server, haproxy and
# openssl (apt-get install redis-server haproxy openssl).
#
# Environment (optional): CLUSTER_PORT (default 8443), CLUSTER_GATEWAY_BIN (a prebuilt
# arcp-gateway instead of a release build), ADMIN_USERNAME / ADMIN_PASSWORD / JWT_SECRET /
# AGENT_KEYS as in scripts/demo.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
dir="$root/target/cluster"
mkdir -p "$dir"
lb_port="${CLUSTER_PORT:-8443}"
for tool in redis-server haproxy openssl curl; do
    command -v "$tool" >/dev/null || { echo "cluster: $tool is missing (apt-get install $tool)" >&2; exit 1; }
done
rand() { head -c "$1" /dev/urandom | od -An -tx1 | tr -d ' \n'; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

export ADMIN_USERNAME="${ADMIN_USERNAME:-admin}"
export ADMIN_PASSWORD="${ADMIN_PASSWORD:-cluster-admin-$(rand 12)}"
export JWT_SECRET="${JWT_SECRET:-cluster-jwt-secret-$(rand 24)}"
export JWT_ALGORITHM="${JWT_ALGORITHM:-HS256}"
export AGENT_KEYS="${AGENT_KEYS:-cluster-agent-key-0001}"
export ARCP_ADMIN_PASSWORD="$ADMIN_PASSWORD" ARCP_JWT_SECRET="$JWT_SECRET"
export ARCP_GATEWAY_SIGNING_SECRET="${ARCP_GATEWAY_SIGNING_SECRET:-$(rand 48)}"

bin="${CLUSTER_GATEWAY_BIN:-}"
if [[ -z "$bin" ]]; then
    echo "cluster: building arcp-gateway (release)..." >&2
    cargo build --release -j2 --bin arcp-gateway >&2
    bin="$root/target/release/arcp-gateway"
fi

pids=()
cleanup() {
    trap - INT TERM EXIT
    for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
    "$root/scripts/arcp-upstream.sh" stop --state-dir "$dir/arcp" || true
    echo "cluster: stopped" >&2
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

echo "cluster: starting ARCP (first run installs it into target/arcp-venv)..." >&2
arcp_port=$("$root/scripts/arcp-upstream.sh" start --state-dir "$dir/arcp")

redis_port=$(free_port)
redis-server --port "$redis_port" --bind 127.0.0.1 --save '' --appendonly no \
    --logfile "$dir/redis.log" --dir "$dir" &
pids+=($!)
export ARCP_GATEWAY_REDIS_URL="redis://127.0.0.1:$redis_port/0"

# One CA and one leaf for both replicas, so clients trust one certificate whichever answers.
if [[ ! -s "$dir/ca.pem" ]]; then
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 30 \
        -subj "/CN=arcp-gateway cluster CA" -keyout "$dir/ca.key" -out "$dir/ca.pem" 2>/dev/null
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=localhost" \
        -keyout "$dir/key.pem" -out "$dir/leaf.csr" 2>/dev/null
    printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\n' >"$dir/san.ext"
    openssl x509 -req -in "$dir/leaf.csr" -CA "$dir/ca.pem" -CAkey "$dir/ca.key" \
        -CAcreateserial -days 30 -extfile "$dir/san.ext" -out "$dir/cert.pem" 2>/dev/null
fi
hash=$(printf 'ARCP' | "$bin" hash-password)

backends=""
for name in a b; do
    port=$(free_port)
    cat >"$dir/replica-$name.yaml" <<YAML
# written by scripts/cluster.sh
listeners:
  - address: 127.0.0.1:$port
    tls: {cert_file: "$dir/cert.pem", key_file: "$dir/key.pem"}
    # HAProxy states each client's address first (send-proxy-v2), so throttling and
    # per-address caps count clients, not the balancer.
    proxy_protocol: {trusted: [127.0.0.1]}
upstream:
  url: http://127.0.0.1:$arcp_port
  service_account: {username: $ADMIN_USERNAME, password_env: ARCP_ADMIN_PASSWORD}
  token_verification: {algorithm: $JWT_ALGORITHM, secret_env: ARCP_JWT_SECRET}
auth:
  signing_key: cluster
  keys: [{kid: cluster, algorithm: HS256, secret_env: ARCP_GATEWAY_SIGNING_SECRET}]
  users: [{name: ARCP, password_hash: "$hash"}]
sessions:
  store:
    redis: {url_env: ARCP_GATEWAY_REDIS_URL, key_prefix: "cluster:"}
routes:
  profile: arcp
YAML
    "$bin" run --config "$dir/replica-$name.yaml" >"$dir/replica-$name.log" 2>&1 &
    pids+=($!)
    backends+="    server replica-$name 127.0.0.1:$port check send-proxy-v2 check-send-proxy"$'\n'
done

cat >"$dir/haproxy.cfg" <<CFG
# written by scripts/cluster.sh: TCP round robin, TLS stays end to end to the replicas
defaults
    mode tcp
    timeout connect 5s
    timeout client 1m
    timeout server 1m
frontend gateway
    bind 127.0.0.1:$lb_port
    default_backend replicas
backend replicas
    balance roundrobin
$backends
CFG
haproxy -f "$dir/haproxy.cfg" -db >"$dir/haproxy.log" 2>&1 &
pids+=($!)

for _ in $(seq 1 150); do
    if curl -s -o /dev/null --cacert "$dir/ca.pem" "https://127.0.0.1:$lb_port/gateway/live"; then break; fi
    sleep 0.1
done

cat <<MSG
Two arcp-gateway replicas behind HAProxy on https://127.0.0.1:$lb_port, sharing sessions
through redis-server on 127.0.0.1:$redis_port, in front of ARCP on 127.0.0.1:$arcp_port.
Logs and configs: target/cluster/. CA: target/cluster/ca.pem. Each curl below is a new
connection, so HAProxy alternates the replicas. Try:

  export CURL_CA_BUNDLE=target/cluster/ca.pem
  TOKEN=\$(curl -s -X POST https://127.0.0.1:$lb_port/auth/login -H 'Content-Type: application/json' \\
      -H 'X-Client-Fingerprint: laptop' -d '{"username":"ARCP","password":"ARCP"}' \\
      | python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])')
  for i in 1 2 3 4; do curl -s -o /dev/null -w '%{http_code}\\n' https://127.0.0.1:$lb_port/agents/stats \\
      -H "Authorization: Bearer \$TOKEN" -H 'X-Client-Fingerprint: laptop'; done      # 200 on both replicas
  grep -c '"POST /auth/login' target/cluster/arcp/arcp.log                         # 1 upstream login
  curl -s -X POST https://127.0.0.1:$lb_port/auth/logout -H "Authorization: Bearer \$TOKEN" -H 'X-Client-Fingerprint: laptop'
  curl -s https://127.0.0.1:$lb_port/agents/stats -H "Authorization: Bearer \$TOKEN" -H 'X-Client-Fingerprint: laptop'
                                                       # 401 session-invalid, whichever replica answers
  redis-cli -p $redis_port --scan --pattern 'cluster:*'                            # what the fleet stores
  kill the redis-server: requests get 401 "session storage system is unavailable", logins 503;
  start it again on port $redis_port: the replicas recover without a restart.

Ctrl-C stops HAProxy, both replicas, redis-server and ARCP.
MSG
wait -n "${pids[@]}"
