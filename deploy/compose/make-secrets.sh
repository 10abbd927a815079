#!/usr/bin/env bash
# Creates deploy/compose/secrets/ for compose.yaml with fresh random values and a
# self-signed certificate for localhost. Refuses to overwrite an existing directory.
# The directory is 0700 (only you on the host); the files are 0644 because compose bind-
# mounts them unchanged and the gateway runs as UID 65532. Nothing is printed.
set -euo pipefail
cd "$(dirname "$0")"
dir=secrets
if [[ -e "$dir/arcp.env" ]]; then
    echo "make-secrets: $dir/ already holds secrets; remove it to start over" >&2
    exit 1
fi
install -d -m 0700 "$dir"
rand() { head -c "$1" /dev/urandom | od -An -tx1 | tr -d ' \n'; }
umask 0022
admin_password=$(rand 24)
jwt_secret=$(rand 48)
redis_password=$(rand 24)
printf '%s' "$admin_password" >"$dir/arcp_admin_password"
printf '%s' "$jwt_secret" >"$dir/arcp_jwt_secret"
rand 48 >"$dir/gateway_signing_secret"
printf 'requirepass %s\n' "$redis_password" >"$dir/redis.conf"
cat >"$dir/arcp.env" <<ENV
ADMIN_USERNAME=admin
ADMIN_PASSWORD=$admin_password
JWT_SECRET=$jwt_secret
AGENT_KEYS=$(rand 16),$(rand 16)
REDIS_PASSWORD=$redis_password
ENV
printf 'ARCP_REDIS_URL=redis://:%s@redis:6379/0\n' "$redis_password" >"$dir/gateway.env"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 90 \
    -subj "/CN=localhost" -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" \
    -keyout "$dir/tls.key" -out "$dir/tls.crt" 2>/dev/null
chmod 0644 "$dir"/*
echo "make-secrets: wrote $dir/ (clients trust $dir/tls.crt)" >&2
