#!/usr/bin/env bash
# The training load of a profile-guided build (scripts/pgo-build.sh): runs the given
# arcp-gateway binary in front of the bench's stub upstream (nginx answering a fixed JSON
# body) and sends it the requests a gateway mostly serves, so the profile it writes on exit
# says which code is hot:
#
#   bench/train.sh path/to/arcp-gateway      # ~20 s; needs nginx, wrk, curl, python3
#
# The gateway runs at the default `logging.level: info` (access log on). The load, over plain
# HTTP and TLS, 32 connections, wrk for BENCH_TRAIN_DURATION (3s) each:
# the admin route (gateway token and fingerprint, credentials swapped), the agent route
# (an upstream HS256 token verified), the public route; then for a second each, a new
# connection per request (TLS handshakes) and refusals (no token, a wrong fingerprint). Every
# request must get the status class it should (2xx, or 4xx and a sample of the exact status)
# and no socket error; anything else fails the run, so a profile is never made from a load of
# errors. Binds 127.0.0.1 only; stops what it starts.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
bench="$root/bench"
export PATH="$PATH:/usr/sbin:/sbin"

gateway_bin="${1:?usage: bench/train.sh path/to/arcp-gateway}"
[[ -x "$gateway_bin" ]] || { echo "train: $gateway_bin is not an executable" >&2; exit 2; }
gateway_bin=$(realpath "$gateway_bin")
DURATION="${BENCH_TRAIN_DURATION:-3s}"

# shellcheck source=bench/common.sh
source "$bench/common.sh"
log() { echo "train: $*" >&2; }
die() { echo "train: error: $*" >&2; exit 1; }
need nginx wrk curl python3

work=$(mktemp -d "${TMPDIR:-/tmp}/arcp-gateway-train.XXXXXX")
mkdir -p "$work/tls" "$work/stub-tmp"
read -r STUB_PORT GW_PLAIN_PORT GW_TLS_PORT < <(free_ports 3)
export BENCH_ARCP_JWT_SECRET="train-jwt-$(hex 24)"
export BENCH_ARCP_ADMIN_PASSWORD="train-admin-$(hex 8)"
export BENCH_GATEWAY_SIGNING_SECRET="train-signing-$(hex 24)"
user_password="train-user-$(hex 8)"
fingerprint="train-$(hex 8)-laptop"
# An instrumented binary writes its counts wherever it runs: hashing the password (argon2id)
# is not part of the load, so its counts go elsewhere.
password_hash=$(printf '%s' "$user_password" |
    LLVM_PROFILE_FILE="$work/hash-password.profraw" "$gateway_bin" hash-password)
body=$(tr -d '\n' <"$bench/stub-body.json")
export WORK="$work" BODY="$body" STUB_PORT GW_PLAIN_PORT GW_TLS_PORT PASSWORD_HASH="$password_hash" \
    LOG_LEVEL=info
python3 "$bench/render.py" "$bench/stub-nginx.conf.in" "$work/stub-nginx.conf" WORK STUB_PORT BODY
python3 "$bench/render.py" "$bench/gateway.yaml.in" "$work/gateway.yaml" \
    WORK STUB_PORT GW_PLAIN_PORT GW_TLS_PORT PASSWORD_HASH LOG_LEVEL

nginx -e "$work/stub-nginx.error.log" -c "$work/stub-nginx.conf" >"$work/stub.log" 2>&1 &
stub_pid=$!
pids+=("$stub_pid")
# At `logging.level: info`, the default: the access log is part of what a request costs. Its
# lines (one a request, hundreds of megabytes) are dropped but for the last 256 KiB.
"$gateway_bin" run --config "$work/gateway.yaml" > >(tail -c 262144 >"$work/gateway.log") 2>&1 &
gateway_pid=$!
pids+=("$gateway_pid")
ready=""
for _ in $(seq 1 100); do
    kill -0 "$gateway_pid" 2>/dev/null || { sleep 0.5; cat "$work/gateway.log" >&2; die "the gateway exited"; }
    if [[ -s "$work/tls/gateway-info-ca.pem" ]] &&
        curl -sf -o /dev/null "http://127.0.0.1:$STUB_PORT/" &&
        curl -sf -o /dev/null "http://127.0.0.1:$GW_PLAIN_PORT/health"; then
        ready=1
        break
    fi
    sleep 0.1
done
[[ -n "$ready" ]] || die "the stub or the gateway did not start (logs in $work)"

token=$(curl -sf -X POST "http://127.0.0.1:$GW_PLAIN_PORT/auth/login" \
    -H 'Content-Type: application/json' -H "X-Client-Fingerprint: $fingerprint" \
    -d "{\"username\":\"bench\",\"password\":\"$user_password\"}" |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])') ||
    die "login at the gateway failed"
agent_token=$(python3 "$bench/agent_token.py")

# load <expected status> <url> [authorization] [fingerprint]; $duration, $close
duration="$DURATION"
close=0
load() {
    local status="$1" url="$2" out
    out=$(BENCH_AUTHORIZATION="${3:-}" BENCH_FINGERPRINT="${4:-}" BENCH_CLOSE="$close" \
        wrk -t1 -c32 -d"$duration" -s "$bench/wrk.lua" "$url" 2>&1) || die "wrk failed: $out"
    local line requests non2xx errors
    line=$(grep '^BENCH_RESULT' <<<"$out") || die "no result from wrk: $out"
    field() { sed "s/.* $1=\([0-9]*\).*/\1/" <<<"$line"; }
    requests=$(field requests)
    non2xx=$(field non2xx)
    errors=$(($(field connect) + $(field read) + $(field write) + $(field timeout)))
    ((requests > 0)) || die "no requests completed on $url"
    ((errors == 0)) || die "$errors socket errors (connect, read, write, timeout) on $url: $line"
    if [[ "$status" == 200 ]]; then
        ((non2xx == 0)) || die "$non2xx of $requests requests to $url were not answered 2xx"
    else
        ((non2xx == requests)) || die "$((requests - non2xx)) of $requests requests to $url were answered 2xx"
        local got
        got=$(curl -sk -o /dev/null -w '%{http_code}' ${3:+-H "Authorization: $3"} \
            ${4:+-H "X-Client-Fingerprint: $4"} "$url")
        [[ "$got" == "$status" ]] || die "$url answered $got, not $status"
    fi
    log "$requests requests, $url (${status}$([[ $close == 1 ]] && echo ", a connection each"))"
}

fronts=("http://127.0.0.1:$GW_PLAIN_PORT" "https://127.0.0.1:$GW_TLS_PORT")
for front in "${fronts[@]}"; do
    load 200 "$front/agents/stats" "Bearer $token" "$fingerprint"
    load 200 "$front/agents" "Bearer $agent_token"
    load 200 "$front/public/stats"
done
duration=1s
close=1
load 200 "${fronts[1]}/public/stats"
close=0
# Last: repeated fingerprint mismatches end the session.
for front in "${fronts[@]}"; do
    load 401 "$front/agents/stats"
    load 401 "$front/agents/stats" "Bearer $token" "another-laptop"
done

# The profile is written when the process exits: a clean stop, not a kill, within a minute.
kill -TERM "$gateway_pid"
for _ in $(seq 1 600); do
    kill -0 "$gateway_pid" 2>/dev/null || break
    sleep 0.1
done
kill -0 "$gateway_pid" 2>/dev/null && die "the gateway did not stop within 60 s of SIGTERM (logs in $work)"
status=0
wait "$gateway_pid" || status=$?
pids=("$stub_pid")
((status == 0)) || die "the gateway exited with $status on SIGTERM (logs in $work)"
rm -rf "$work"
work=""
log "done"
