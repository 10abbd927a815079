#!/usr/bin/env bash
# The ARCP dashboard in headless Chromium through arcp-gateway (tests/browser/dashboard.test.mjs).
#
# 1. Installs what is missing: Debian's chromium (and libnss3-tools for certutil) with apt
#    when /usr/bin/chromium (or certutil) is absent (root only; one apt-get update), and
#    playwright-core with `npm ci` when tests/browser/node_modules is missing.
# 2. Builds the gateway (cargo build -j2), starts the real ARCP 2.1.2 server
#    (scripts/arcp-upstream.sh, fresh state in target/browser/arcp) and the gateway with a
#    config written to target/browser/gateway.yaml: development TLS on a free loopback port
#    (CA written to target/browser/ca.pem), ARCP's admin as the service account, ARCP's
#    JWT_SECRET for agent tokens, the user ARCP with password ARCP.
# 3. Runs the test; the browser trusts the development CA through a private NSS database.
#    Stops the gateway and the server on exit, and exits with the test's status.
#
# Environment (optional):
#   BROWSER_OUT_DIR          logs, config, CA (default target/browser)
#   BROWSER_SCREENSHOT_DIR   screenshots + dashboard-events.json (default: BROWSER_OUT_DIR)
#   BROWSER_TEST_TIMEOUT     seconds for starting the servers and running the test (default 300)
#   BROWSER_BUILD_TIMEOUT    seconds for cargo build (default 1800; a no-op after scripts/test.sh)
#   CHROMIUM_PATH            default /usr/bin/chromium
#   GATEWAY_LOG_LEVEL        the gateway's log level (default info)
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$(pwd)

out="${BROWSER_OUT_DIR:-target/browser}"
mkdir -p "$out"
out="$(cd "$out" && pwd)"
shots="${BROWSER_SCREENSHOT_DIR:-$out}"
chromium="${CHROMIUM_PATH:-/usr/bin/chromium}"
test_timeout="${BROWSER_TEST_TIMEOUT:-300}"

log() { echo "browser-test: $*" >&2; }

# --- 1. what the test needs --------------------------------------------------------------
apt_updated=0
apt_install() {
    if [[ $(id -u) -ne 0 ]]; then
        log "missing $*; install it as root: apt-get install -y $*"
        exit 1
    fi
    if ((apt_updated == 0)); then
        timeout 600 apt-get update -q >&2
        apt_updated=1
    fi
    log "apt-get install -y $*"
    DEBIAN_FRONTEND=noninteractive timeout 900 apt-get install -y -q "$@" >&2
}
if [[ "$chromium" == /usr/bin/chromium && ! -x /usr/bin/chromium ]]; then
    apt_install chromium
fi
[[ -x "$chromium" ]] || { log "no Chromium at $chromium"; exit 1; }
command -v certutil >/dev/null 2>&1 || apt_install libnss3-tools

command -v node >/dev/null 2>&1 || { log "node (>= 20) is required"; exit 1; }
node_major=$(node -p 'process.versions.node.split(".")[0]')
if ((node_major < 20)); then
    log "node >= 20 is required for playwright-core (found $(node --version))"
    exit 1
fi
if [[ ! -d tests/browser/node_modules/playwright-core ]]; then
    log "npm ci (tests/browser)"
    (cd tests/browser && timeout 300 npm ci --no-audit --no-fund >&2)
fi

log "building arcp-gateway (debug)"
timeout "${BROWSER_BUILD_TIMEOUT:-1800}" cargo build -j2 --locked --bin arcp-gateway >&2
gateway_bin="$root/target/debug/arcp-gateway"

# --- 2. servers ----------------------------------------------------------------------------
deadline=$((SECONDS + test_timeout))
remaining() { echo $((deadline - SECONDS > 1 ? deadline - SECONDS : 1)); }

rand() { head -c "$1" /dev/urandom | od -An -tx1 | tr -d ' \n'; }
export ADMIN_USERNAME=admin
export ADMIN_PASSWORD="browser-admin-$(rand 12)"
export JWT_SECRET="browser-jwt-secret-$(rand 24)"
export JWT_ALGORITHM=HS256
export AGENT_KEYS="browser-agent-key-$(rand 8),browser-agent-key-$(rand 8)"
export ARCP_TPR=false # an agent registers with its temp token alone (no three-phase registration)
# The test's agents send no heartbeats; keep them ALIVE (default 60 s) and uncollected for
# the whole run, however slow the machine.
export AGENT_HEARTBEAT_TIMEOUT=600

arcp_state="$out/arcp"
gateway_pid=""
cleanup() {
    local status=$?
    trap - EXIT INT TERM
    if [[ -n "$gateway_pid" ]] && kill -0 "$gateway_pid" 2>/dev/null; then
        kill -TERM "$gateway_pid" 2>/dev/null || true
        for _ in $(seq 1 50); do kill -0 "$gateway_pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$gateway_pid" 2>/dev/null || true
        wait "$gateway_pid" 2>/dev/null || true
    fi
    "$root/scripts/arcp-upstream.sh" stop --state-dir "$arcp_state" >/dev/null 2>&1 || true
    if ((status != 0)); then
        log "FAILED (status $status); last gateway log lines ($out/gateway.log):"
        tail -n 30 "$out/gateway.log" >&2 2>/dev/null || true
        log "ARCP log: $arcp_state/arcp.log"
    fi
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# A fresh ARCP state each run (its stored logs and alerts grow from run to run).
"$root/scripts/arcp-upstream.sh" stop --state-dir "$arcp_state" >/dev/null 2>&1 || true
rm -rf "$arcp_state"
rm -f "$shots"/[0-9][0-9]-*.png "$shots/dashboard-events.json"
log "starting ARCP 2.1.2"
upstream_port=$(ARCP_START_TIMEOUT=$(($(remaining) < 60 ? $(remaining) : 60)) \
    "$root/scripts/arcp-upstream.sh" start --state-dir "$arcp_state")

gateway_port=$(python3 -c 'import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])
s.close()')
password_hash=$(printf 'ARCP' | "$gateway_bin" hash-password)
rm -f "$out/ca.pem"
cat >"$out/gateway.yaml" <<YAML
# Written by tests/browser/run.sh for one run.
listeners:
  - address: 127.0.0.1:$gateway_port
    tls:
      development:
        write_ca_to: ca.pem
        names: [localhost, 127.0.0.1]
upstream:
  url: http://127.0.0.1:$upstream_port
  service_account:
    username: $ADMIN_USERNAME
    password_env: ARCP_ADMIN_PASSWORD
  token_verification:
    algorithm: HS256
    secret_env: ARCP_JWT_SECRET
logging:
  format: pretty
  level: ${GATEWAY_LOG_LEVEL:-info}
auth:
  signing_key: browser
  keys:
    - kid: browser
      algorithm: HS256
      secret_env: ARCP_GATEWAY_SIGNING_SECRET
  users:
    - name: ARCP
      password_hash: "$password_hash"
routes:
  profile: arcp
YAML
export ARCP_ADMIN_PASSWORD="$ADMIN_PASSWORD"
export ARCP_JWT_SECRET="$JWT_SECRET"
export ARCP_GATEWAY_SIGNING_SECRET="$(head -c 48 /dev/urandom | base64 | tr -d '\n')"
"$gateway_bin" check-config "$out/gateway.yaml" >&2

log "starting arcp-gateway on https://127.0.0.1:$gateway_port -> ARCP on 127.0.0.1:$upstream_port"
"$gateway_bin" run --config "$out/gateway.yaml" >"$out/gateway.log" 2>&1 &
gateway_pid=$!
ready=0
for _ in $(seq 1 300); do
    if [[ -s "$out/ca.pem" ]] &&
        [[ "$(curl -s -o /dev/null -w '%{http_code}' --noproxy '*' --max-time 2 --cacert "$out/ca.pem" \
            "https://127.0.0.1:$gateway_port/health")" == 200 ]]; then
        ready=1
        break
    fi
    kill -0 "$gateway_pid" 2>/dev/null || { log "the gateway exited"; exit 1; }
    sleep 0.1
done
((ready)) || { log "the gateway did not answer GET /health within 30 s"; exit 1; }

# --- 3. the test ---------------------------------------------------------------------------
log "running dashboard.test.mjs (screenshots: ${shots#"$root/"})"
status=0
GATEWAY_URL="https://127.0.0.1:$gateway_port" \
    GATEWAY_CA_FILE="$out/ca.pem" \
    BROWSER_AGENT_KEYS="$AGENT_KEYS" \
    BROWSER_SCREENSHOT_DIR="$shots" \
    CHROMIUM_PATH="$chromium" \
    BROWSER_TEST_BUDGET_MS=$(($(remaining) * 1000)) \
    timeout -k 10 "$(remaining)" node tests/browser/dashboard.test.mjs || status=$?
exit "$status"
