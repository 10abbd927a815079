#!/usr/bin/env bash
# Instructions per request: arcp-gateway, nginx and HAProxy under callgrind, same requests.
#
#   sudo bench/instructions.sh      # ~3 minutes; results in target/bench/ir-<timestamp>/
#
# CPU time per request (bench/run.sh) moves with whatever else the host runs; instruction
# counts do not: callgrind counts the user-space instructions a process executes (its own
# code and its libraries, not the kernel's), the same for the same binary and requests on a
# busy machine as on an idle one. So this is the figure for small changes and noisy hosts,
# and the companion of run.sh's CPU figures (which include the kernel, about half the cost),
# not a replacement: an instruction is not a cycle (cache misses, branch mispredictions and
# the kernel are not in it). Two things valgrind would count unlike the CPU runs them, set
# right or named here:
#   * a `rep stos`/`rep movs` counts once per element, so glibc's memset/memcpy are told to
#     use their vector loops at every size (GLIBC_TUNABLES below), for every contender;
#   * valgrind's CPU has no SHA extensions, so SHA-256 (the gateway's fingerprint hash) runs
#     its portable code here, about 3 500 instructions a block, against a few hundred with
#     SHA-NI; the summary shows it on its own line (`sha2`).
#
# What it does: starts the stub upstream (nginx, natively, not counted) and each contender
# under `valgrind --tool=callgrind` on plain HTTP, pinned to one CPU with wrk on another:
#   (b) nginx proxy_pass (one process, no master), (c) HAProxy with HS256 jwt_verify,
#   (d) the gateway's admin route, (e) its agent route, (f) its public route (one gateway),
#   (g) BENCH_BASELINE's admin route when given.
# For each: a warm-up, then the counters are zeroed (callgrind_control -z), wrk runs for
# BENCH_IR_DURATION at -c4, the counters are dumped (callgrind_control -d), and the dump's
# total divided by the requests wrk completed is the figure. The gateway's admin-route dump
# is summarised by bench/callgrind_summary.py: instructions per request by crate and function.
#
# The gateway is built as the container image builds it: profile-guided, or plain with
# BENCH_PGO=0 (see bench/common.sh, build_gateway).
#
# Environment: BENCH_IR_DURATION=5s, BENCH_PGO=1, BENCH_BASELINE=path (another arcp-gateway binary),
# BENCH_LOAD_CPU=0 BENCH_SERVER_CPU=1.
set -euo pipefail
shopt -s nullglob
cd "$(dirname "$0")/.."
root=$(pwd)
bench="$root/bench"
export PATH="$PATH:/usr/sbin:/sbin"
DURATION="${BENCH_IR_DURATION:-5s}"
LOAD_CPU="${BENCH_LOAD_CPU:-0}"
SERVER_CPU="${BENCH_SERVER_CPU:-1}"
BASELINE="${BENCH_BASELINE:-}"
[[ -z "$BASELINE" || -x "$BASELINE" ]] || { echo "bench: BENCH_BASELINE=$BASELINE is not an executable" >&2; exit 2; }
# shellcheck source=bench/common.sh
source "$bench/common.sh"

need nginx haproxy wrk valgrind
build_gateway

work="$root/target/bench/ir-$(date +%Y%m%d-%H%M%S)"
mkdir -p "$work/tls" "$work/wrk" "$work/stub-tmp" "$work/proxy-tmp"
read -r STUB_PORT NGINX_PLAIN_PORT NGINX_TLS_PORT HAPROXY_PLAIN_PORT HAPROXY_TLS_PORT \
    GW_PLAIN_PORT GW_TLS_PORT GWB_PLAIN_PORT GWB_TLS_PORT < <(free_ports 9)
JWT_SECRET="bench-jwt-$(hex 24)"
export BENCH_ARCP_JWT_SECRET="$JWT_SECRET"
export BENCH_ARCP_ADMIN_PASSWORD="bench-admin-$(hex 8)"
export BENCH_GATEWAY_SIGNING_SECRET="bench-signing-$(hex 24)"
user_password="bench-user-$(hex 8)"
fingerprint="bench-$(hex 8)-laptop"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
    -subj "/CN=127.0.0.1" -keyout "$work/tls/key.pem" -out "$work/tls/cert.pem" 2>/dev/null
cat "$work/tls/cert.pem" "$work/tls/key.pem" >"$work/tls/haproxy.pem"
export WORK="$work" BODY STUB_PORT NGINX_PLAIN_PORT NGINX_TLS_PORT HAPROXY_PLAIN_PORT \
    HAPROXY_TLS_PORT GW_PLAIN_PORT GW_TLS_PORT JWT_SECRET LOG_LEVEL=warn
BODY=$(tr -d '\n' <"$bench/stub-body.json")
PASSWORD_HASH=$(printf '%s' "$user_password" | "$gateway_bin" hash-password)
export PASSWORD_HASH
render() { python3 "$bench/render.py" "$@"; }
render "$bench/stub-nginx.conf.in" "$work/stub-nginx.conf" WORK STUB_PORT BODY
render "$bench/proxy-nginx.conf.in" "$work/proxy-nginx.conf" WORK STUB_PORT NGINX_PLAIN_PORT NGINX_TLS_PORT
# One process: callgrind then counts nginx's worker, the process that serves.
sed -i 's/^master_process on;/master_process off;/' "$work/proxy-nginx.conf"
render "$bench/haproxy.cfg.in" "$work/haproxy.cfg" WORK STUB_PORT HAPROXY_PLAIN_PORT HAPROXY_TLS_PORT JWT_SECRET
render "$bench/gateway.yaml.in" "$work/gateway.yaml" WORK STUB_PORT GW_PLAIN_PORT GW_TLS_PORT PASSWORD_HASH LOG_LEVEL
if [[ -n "$BASELINE" ]]; then
    GW_PLAIN_PORT=$GWB_PLAIN_PORT GW_TLS_PORT=$GWB_TLS_PORT render "$bench/gateway.yaml.in" \
        "$work/gateway-base.yaml" WORK STUB_PORT GW_PLAIN_PORT GW_TLS_PORT PASSWORD_HASH LOG_LEVEL
    sed -i 's#gateway-warn-ca.pem#gateway-base-ca.pem#' "$work/gateway-base.yaml"
fi

tunables=glibc.cpu.x86_rep_stosb_threshold=0xffffffffffff:glibc.cpu.x86_rep_movsb_threshold=0xffffffffffff
counted() { # name command...: under callgrind
    local name="$1"
    shift
    start_server "$name" env GLIBC_TUNABLES="$tunables" valgrind --tool=callgrind --callgrind-out-file="$work/callgrind.$name" "$@"
}
wait_http() { # url pid: up to 120 s (valgrind starts slowly)
    for _ in $(seq 1 1200); do
        curl -s -o /dev/null "$1" && return 0
        kill -0 "$2" 2>/dev/null || die "the server for $1 exited: see $work"
        sleep 0.1
    done
    die "nothing answers on $1"
}
login() { # plain port
    curl -sf -X POST "http://127.0.0.1:$1/auth/login" \
        -H 'Content-Type: application/json' -H "X-Client-Fingerprint: $fingerprint" \
        -d "{\"username\":\"bench\",\"password\":\"$user_password\"}" |
        python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])'
}
results="$work/instructions.txt"
: >"$results"
measure() { # id pid url authorization fingerprint
    local id="$1" pid="$2" url="$3" out="$work/wrk/$1"
    local env=(BENCH_AUTHORIZATION="$4" BENCH_FINGERPRINT="$5")
    env "${env[@]}" taskset -c "$LOAD_CPU" wrk -t1 -c4 -d2s -s "$bench/wrk.lua" "$url" >"$out.warmup" 2>&1
    callgrind_control -z "$pid" >/dev/null 2>&1
    env "${env[@]}" taskset -c "$LOAD_CPU" wrk -t1 -c4 -d"$DURATION" -s "$bench/wrk.lua" "$url" >"$out.txt" 2>&1
    # The dump is written next to the process's out file, as <out file>.<dump number>.
    local dumps=()
    callgrind_control -d "$pid" >/dev/null 2>&1
    for _ in $(seq 1 100); do
        dumps=("$work"/callgrind.*.[0-9]*)
        ((${#dumps[@]})) && break
        sleep 0.1
    done
    ((${#dumps[@]} == 1)) || die "callgrind wrote ${#dumps[@]} dumps for $id"
    mv "${dumps[0]}" "$work/ir-$id.callgrind"
    local line
    line=$(grep '^BENCH_RESULT' "$out.txt") || die "no result from wrk: $(cat "$out.txt")"
    python3 - "$id" "$line" "$work/ir-$id.callgrind" >>"$results" <<'PY'
import re, sys
cid, line, dump = sys.argv[1:]
r = dict(kv.split("=") for kv in line.split()[1:])
requests, non2xx = int(r["requests"]), int(r["non2xx"])
total = next(int(m.group(1)) for m in map(re.compile(r"^(?:summary|totals): (\d+)").match, open(dump)) if m)
print(f"{cid} {requests} {non2xx} {total} {total / max(requests, 1):.0f}")
PY
    log "  $(tail -1 "$results")"
}

start_server stub nginx -e "$work/stub-nginx.error.log" -p "$work" -c "$work/stub-nginx.conf"
wait_http "http://127.0.0.1:$STUB_PORT/" "$last_pid"
agent_token=$(python3 "$bench/agent_token.py")

log "nginx under callgrind"
counted b nginx -e "$work/proxy-nginx.error.log" -p "$work" -c "$work/proxy-nginx.conf"
wait_http "http://127.0.0.1:$NGINX_PLAIN_PORT/" "$last_pid"
measure b "$last_pid" "http://127.0.0.1:$NGINX_PLAIN_PORT/agents/stats" "" ""

log "HAProxy under callgrind"
counted c haproxy -db -f "$work/haproxy.cfg"
wait_http "http://127.0.0.1:$HAPROXY_PLAIN_PORT/" "$last_pid"
measure c "$last_pid" "http://127.0.0.1:$HAPROXY_PLAIN_PORT/agents/stats" "Bearer $agent_token" ""

log "the gateway under callgrind"
counted gateway "$gateway_bin" run --config "$work/gateway.yaml"
wait_http "http://127.0.0.1:$GW_PLAIN_PORT/health" "$last_pid"
gw=$last_pid
token=$(login "$GW_PLAIN_PORT") || die "login at the gateway failed"
measure d "$gw" "http://127.0.0.1:$GW_PLAIN_PORT/agents/stats" "Bearer $token" "$fingerprint"
measure e "$gw" "http://127.0.0.1:$GW_PLAIN_PORT/agents" "Bearer $agent_token" ""
measure f "$gw" "http://127.0.0.1:$GW_PLAIN_PORT/public/stats" "" ""
if [[ -n "$BASELINE" ]]; then
    log "the baseline under callgrind"
    counted base "$BASELINE" run --config "$work/gateway-base.yaml"
    wait_http "http://127.0.0.1:$GWB_PLAIN_PORT/health" "$last_pid"
    token=$(login "$GWB_PLAIN_PORT") || die "login at the baseline gateway failed"
    measure g "$last_pid" "http://127.0.0.1:$GWB_PLAIN_PORT/agents/stats" "Bearer $token" "$fingerprint"
fi

for id in d f b; do
    python3 "$bench/callgrind_summary.py" "$work/ir-$id.callgrind" "$(awk -v id=$id '$1 == id {print $2}' "$results")" \
        >"$work/ir-$id.txt"
done
{
    echo "== instructions per request (callgrind, user space, plain HTTP, wrk -c4 for $DURATION)"
    echo "  arcp-gateway: $built_from; $(nginx -v 2>&1); $(haproxy -v | head -1 | cut -d' ' -f1-3); $(valgrind --version)"
    python3 - "$results" <<'PY'
import sys
rows = {}
for line in open(sys.argv[1]):
    cid, requests, non2xx, total, per = line.split()
    rows[cid] = (int(requests), int(non2xx), int(per))
labels = {"b": "(b) nginx proxy_pass", "c": "(c) haproxy jwt_verify", "d": "(d) gateway admin",
          "e": "(e) gateway agent", "f": "(f) gateway public", "g": "(g) baseline admin"}
print(f"  {'contender':<24}{'requests':>9}{'non-2xx':>9}{'instr/req':>11}{'÷ nginx':>9}{'÷ haproxy':>11}")
for cid, (requests, non2xx, per) in rows.items():
    ratio = lambda ref: f"{per / rows[ref][2]:.2f}" if ref in rows else "-"
    print(f"  {labels[cid]:<24}{requests:>9}{non2xx:>9}{per:>11}{ratio('b'):>9}{ratio('c'):>11}")
if "d" in rows and "g" in rows:
    print(f"  admin route, this build ÷ baseline: {rows['d'][2] / rows['g'][2]:.3f}")
PY
    echo
    echo "== (d) gateway admin route, by component and function"
    cat "$work/ir-d.txt"
    echo "  (the public route: $work/ir-f.txt; nginx: $work/ir-b.txt; the dumps: $work/ir-*.callgrind)"
} | tee "$work/report.txt"
