#!/usr/bin/env bash
# Runs every test of arcp-gateway on this machine: installs what the tests need (the real
# ARCP server in a Python venv), runs the Rust unit, integration and end-to-end tests, and
# checks every shipped configuration file.
set -euo pipefail
cd "$(dirname "$0")/.."

# Placeholder secrets so shipped configs that name environment variables can be checked.
export ARCP_ADMIN_PASSWORD="${ARCP_ADMIN_PASSWORD:-check-config-placeholder}"
export ARCP_JWT_SECRET="${ARCP_JWT_SECRET:-check-config-placeholder}"
export ARCP_GATEWAY_SIGNING_SECRET="${ARCP_GATEWAY_SIGNING_SECRET:-check-config-placeholder-0123456789abcdef}"

cargo build -j2 --locked --bins
for f in config/*.yaml; do
  ./target/debug/arcp-gateway check-config "$f"
done

cargo test -j2 --locked --all-targets
