#!/usr/bin/env bash
# Runs every test of arcp-gateway on this machine: installs what the tests need (the real
# ARCP server in a Python venv), runs the Rust unit, integration and end-to-end tests, and
# checks every shipped configuration file.
set -euo pipefail
cd "$(dirname "$0")/.."

# System tools the end-to-end tests run (tests/e2e_arcp.rs): the real curl, and python3 with
# venv support for scripts/arcp-venv.sh. Installed quietly with apt-get when missing and root.
apt_install() {
  if [[ $(id -u) -ne 0 ]] || ! command -v apt-get >/dev/null 2>&1; then
    echo "test.sh: missing $*; install it (apt-get install $*) and run again" >&2
    exit 1
  fi
  echo "test.sh: installing $*" >&2
  DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}
command -v curl >/dev/null 2>&1 || apt_install curl ca-certificates
# A real redis-server (and redis-cli) for the shared-session tests (tests/fleet.rs,
# tests/e2e_fleet.rs); HAProxy in front of the gateway with the PROXY protocol
# (tests/proxy_protocol.rs) and for scripts/cluster.sh.
command -v redis-server >/dev/null 2>&1 || apt_install redis-server
command -v haproxy >/dev/null 2>&1 || apt_install haproxy
if ! command -v python3 >/dev/null 2>&1; then
  apt_install python3 python3-venv
elif ! python3 -c 'import ensurepip, venv' >/dev/null 2>&1; then
  apt_install python3-venv
fi

# Placeholder secrets so shipped configs that name environment variables can be checked.
export ARCP_ADMIN_PASSWORD="${ARCP_ADMIN_PASSWORD:-check-config-placeholder}"
export ARCP_JWT_SECRET="${ARCP_JWT_SECRET:-check-config-placeholder}"
export ARCP_GATEWAY_SIGNING_SECRET="${ARCP_GATEWAY_SIGNING_SECRET:-check-config-placeholder-0123456789abcdef}"

# One build serves both: the test build also puts the binary at target/debug/arcp-gateway
# (a separate `cargo build` would compile the crate a second time, with other features).
cargo test -j2 --locked --all-targets --no-run
for f in config/*.yaml; do
  ./target/debug/arcp-gateway check-config "$f"
done

cargo test -j2 --locked --all-targets

# The admin dashboard in headless Chromium through the gateway (installs chromium and
# playwright-core when missing).
tests/browser/run.sh
