#!/usr/bin/env bash
# The gateway in front of a real ARCP server, on this machine.
#
# Builds arcp-gateway, starts the unmodified ARCP 2.1.2 server (Python venv, 127.0.0.1, a
# free port) and the gateway with its embedded default config (development TLS), prints
# the commands to try, and runs in the foreground until Ctrl-C or SIGTERM, then stops both.
#
# Environment (all optional):
#   GATEWAY_LISTEN      gateway address (default 127.0.0.1:8443)
#   ADMIN_USERNAME / ADMIN_PASSWORD   ARCP's admin account = the gateway's service account
#                       (the gateway logs in upstream with the same name and password)
#   JWT_SECRET, JWT_ALGORITHM, AGENT_KEYS, SESSION_TIMEOUT, ENVIRONMENT   passed to ARCP;
#                       the gateway verifies agent tokens with the same JWT_SECRET
#   ARCP_GATEWAY_SIGNING_SECRET   key for the gateway's tokens (default: random per run)
#   DEMO_GATEWAY_BIN    run this arcp-gateway binary instead of building a release one
#                       (tests/demo.rs passes the one cargo test built)
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

listen="${GATEWAY_LISTEN:-127.0.0.1:8443}"
export ADMIN_USERNAME="${ADMIN_USERNAME:-admin}"
export ADMIN_PASSWORD="${ADMIN_PASSWORD:-demo-admin-$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')}"
export JWT_SECRET="${JWT_SECRET:-demo-jwt-secret-$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')}"
export JWT_ALGORITHM="${JWT_ALGORITHM:-HS256}"
export AGENT_KEYS="${AGENT_KEYS:-demo-agent-key-0001,demo-agent-key-0002}"
demo_dir="$root/target/demo"
mkdir -p "$demo_dir"

gateway_bin="${DEMO_GATEWAY_BIN:-}"
if [[ -z "$gateway_bin" ]]; then
    echo "demo: building arcp-gateway (release)..." >&2
    cargo build --release -j2 --bin arcp-gateway >&2
    gateway_bin="$root/target/release/arcp-gateway"
fi

gateway_pid=""
cleanup() {
    trap - INT TERM EXIT
    if [[ -n "$gateway_pid" ]] && kill -0 "$gateway_pid" 2>/dev/null; then
        kill -TERM "$gateway_pid" 2>/dev/null || true
        wait "$gateway_pid" 2>/dev/null || true
    fi
    "$root/scripts/arcp-upstream.sh" stop --state-dir "$demo_dir/arcp" || true
    echo "demo: stopped" >&2
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

echo "demo: starting the ARCP server (first run installs it into target/arcp-venv)..." >&2
port=$("$root/scripts/arcp-upstream.sh" start --state-dir "$demo_dir/arcp")
echo "demo: ARCP 2.1.2 on http://127.0.0.1:$port (log: target/demo/arcp/arcp.log)" >&2

export ARCP_ADMIN_PASSWORD="$ADMIN_PASSWORD"
export ARCP_JWT_SECRET="$JWT_SECRET"
export ARCP_GATEWAY_SIGNING_SECRET="${ARCP_GATEWAY_SIGNING_SECRET:-$(head -c 48 /dev/urandom | base64 | tr -d '\n')}"
rm -f "$demo_dir/ca.pem"
"$gateway_bin" run --listen "$listen" --upstream "http://127.0.0.1:$port" \
    --upstream-username "$ADMIN_USERNAME" >"$demo_dir/gateway.log" 2>&1 &
gateway_pid=$!

for _ in $(seq 1 100); do
    if [[ -s "$demo_dir/ca.pem" ]] && curl -s -o /dev/null --cacert "$demo_dir/ca.pem" "https://$listen/health"; then
        break
    fi
    if ! kill -0 "$gateway_pid" 2>/dev/null; then
        echo "demo: the gateway exited; its log:" >&2
        cat "$demo_dir/gateway.log" >&2
        exit 1
    fi
    sleep 0.1
done

cat <<MSG
arcp-gateway is listening on https://$listen in front of ARCP (log: target/demo/gateway.log).
Its development CA certificate is target/demo/ca.pem. Try:

  curl --cacert target/demo/ca.pem https://$listen/health

  TOKEN=\$(curl -s --cacert target/demo/ca.pem -X POST https://$listen/auth/login \\
      -H 'Content-Type: application/json' -H 'X-Client-Fingerprint: demo-laptop' \\
      -d '{"username":"ARCP","password":"ARCP"}' | python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])')

  curl --cacert target/demo/ca.pem https://$listen/agents \\
      -H "Authorization: Bearer \$TOKEN" -H 'X-Client-Fingerprint: demo-laptop'

  curl --cacert target/demo/ca.pem https://$listen/agents \\
      -H "Authorization: Bearer \$TOKEN" -H 'X-Client-Fingerprint: another-machine'   # 401 session-invalid

Python: SSL_CERT_FILE=target/demo/ca.pem target/arcp-venv/bin/python -c \\
  'import asyncio; from arcp import ARCPClient
async def main():
    async with ARCPClient("https://$listen") as c:
        await c.login_admin("ARCP", "ARCP"); print(await c.get_system_stats())
asyncio.run(main())'

Dashboard: https://$listen/dashboard (log in as ARCP / ARCP; trust target/demo/ca.pem in your browser).
Ctrl-C stops the gateway and the ARCP server.
MSG

wait "$gateway_pid"
