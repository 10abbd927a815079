#!/usr/bin/env bash
# Macro benchmark: arcp-gateway against no proxy, nginx and HAProxy, side by side in one run.
#
#   sudo bench/run.sh          # ~14 minutes; results in target/bench/<timestamp>/ (and .../latest)
#
# What it does (the method that holds on noisy 2-core machines):
#   * installs nginx, haproxy and wrk with apt-get if missing (needs root), builds the release
#     binary as the container image does: profile-guided (scripts/pgo-build.sh), or plain
#     (cargo build --release -j2) with BENCH_PGO=0;
#   * starts a stub upstream (nginx, one worker) answering bench/stub-body.json (~600 bytes of
#     JSON) on every path, and ARCP's login answer on /auth/login;
#   * starts the contenders, each with a plain-HTTP and a TLS front (nginx and HAProxy use a
#     self-signed P-256 certificate made with openssl; the gateway its development CA):
#       (a) direct to the stub (the floor; plain only)
#       (b) nginx proxy_pass, upstream keepalive 256
#       (c) HAProxy with HS256 jwt_verify of the bearer token
#       (d) arcp-gateway, admin route  GET /agents/stats  (gateway token + fingerprint, swapped
#           for the brokered upstream login)
#       (e) arcp-gateway, agent route  GET /agents        (upstream HS256 agent token verified)
#       (f) arcp-gateway, public route GET /public/stats
#     every server (stub + proxy under test) pinned to CPU 1, wrk pinned to CPU 0; nginx and
#     HAProxy run one worker, the gateway's runtime sees one CPU, so CPU/request is per core;
#   * runs wrk -t1 -d10s at -c32 and -c128, rounds interleaved (a b c d e f, a b c d e f, ...),
#     recording req/s, p50, p99 and the proxy's CPU time per request from /proc/<pid>/stat
#     (utime+stime over the run / requests), and prints medians with ratios to (a) and (b) of
#     the same round, the gateway's RSS after load, p99 at about half of nginx's saturation
#     rate, an optional perf profile of the gateway, and one round with the gateway at
#     `logging.level: info` (the default, with access logs);
#   * binds 127.0.0.1 only; every load run ends by itself; all processes stop on exit.
#
# Environment (all optional):
#   BENCH_DURATION=10s   length of each measured run of the main rounds
#   BENCH_SHORT_DURATION=5s  length of the half-rate and info-round runs
#   BENCH_ROUNDS=3       interleaved rounds per concurrency (at least 3 for a median)
#   BENCH_CONNECTIONS="32 128"
#   BENCH_PERF=auto      auto|1|0: profile the gateway admin route with perf for 10 s
#   BENCH_PERF_IDS="d_plain b_plain"  contenders to profile (f_plain: the public route)
#   BENCH_PERF_CONNECTIONS=32  connection counts to profile at ("32 128": both)
#   BENCH_INFO_ROUND=1   0 skips the rounds comparing logging.level info (access log) with warn
#   BENCH_HALF_RATE=1    0 skips the p99-at-half-saturation measurement
#   BENCH_SAMPLE=0       1: during each half-rate run, sample the server CPU and the proxy's and
#                        stub's threads every 25 ms (bench/sample_cpu.py; wrk/*.samples)
#   BENCH_LOAD_CPU=0 BENCH_SERVER_CPU=1
#   BENCH_PGO=1          0: a plain release build (no profile), ~6 minutes less
#   BENCH_BASELINE=path  another arcp-gateway binary (e.g. a build of the previous commit): it
#                        runs as contender (g), the admin route, in the same interleaved rounds,
#                        so a change's before/after CPU µs/request comes from one run
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
bench="$root/bench"
export PATH="$PATH:/usr/sbin:/sbin"

DURATION="${BENCH_DURATION:-10s}"
SHORT_DURATION="${BENCH_SHORT_DURATION:-5s}"
ROUNDS="${BENCH_ROUNDS:-3}"
CONNECTIONS="${BENCH_CONNECTIONS:-32 128}"
PERF="${BENCH_PERF:-auto}"
PERF_IDS="${BENCH_PERF_IDS:-d_plain b_plain}"
PERF_CONNECTIONS="${BENCH_PERF_CONNECTIONS:-32}"
INFO_ROUND="${BENCH_INFO_ROUND:-1}"
HALF_RATE="${BENCH_HALF_RATE:-1}"
SAMPLE="${BENCH_SAMPLE:-0}"
LOAD_CPU="${BENCH_LOAD_CPU:-0}"
SERVER_CPU="${BENCH_SERVER_CPU:-1}"
BASELINE="${BENCH_BASELINE:-}"
[[ -z "$BASELINE" || -x "$BASELINE" ]] || { echo "bench: BENCH_BASELINE=$BASELINE is not an executable" >&2; exit 2; }

# shellcheck source=bench/common.sh
source "$bench/common.sh"
started_at=$(date +%s)

# --- tools -------------------------------------------------------------------------------
need nginx haproxy wrk
for tool in taskset openssl curl python3; do
    command -v "$tool" >/dev/null || die "$tool is required"
done
ncpu=$(nproc)
((ncpu > LOAD_CPU && ncpu > SERVER_CPU)) || die "needs CPUs $LOAD_CPU and $SERVER_CPU (nproc=$ncpu)"
ulimit -n 16384 2>/dev/null || ulimit -n "$(ulimit -Hn)" || true
clk_tck=$(getconf CLK_TCK)

build_gateway

# --- work directory, ports, secrets, certificates ---------------------------------------
work="$root/target/bench/$(date +%Y%m%d-%H%M%S)"
mkdir -p "$work/tls" "$work/wrk"
ln -sfn "$work" "$root/target/bench/latest"
csv="$work/results.csv"
echo "section,round,contender,front,conc,requests,duration_us,rps,p50_us,p99_us,max_us,non2xx,sock_errors,cpu_us_req,stub_us_req,server_cpu_other_pct,load_cpu_busy_pct,server_cpu_busy_pct,p99_wait_us,p99_wire_us" >"$csv"
memory="$work/memory.txt"
: >"$memory"

read -r STUB_PORT NGINX_PLAIN_PORT NGINX_TLS_PORT HAPROXY_PLAIN_PORT HAPROXY_TLS_PORT \
    GW_PLAIN_PORT GW_TLS_PORT GWI_PLAIN_PORT GWI_TLS_PORT GWB_PLAIN_PORT GWB_TLS_PORT < <(free_ports 11)

JWT_SECRET="bench-jwt-$(hex 24)"            # ARCP's JWT_SECRET: agent tokens, HAProxy's key
export BENCH_ARCP_JWT_SECRET="$JWT_SECRET"
export BENCH_ARCP_ADMIN_PASSWORD="bench-admin-$(hex 8)"
export BENCH_GATEWAY_SIGNING_SECRET="bench-signing-$(hex 24)"
user_password="bench-user-$(hex 8)"
fingerprint="bench-$(hex 8)-laptop"

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
    -subj "/CN=127.0.0.1" -addext "subjectAltName=IP:127.0.0.1,DNS:localhost" \
    -keyout "$work/tls/key.pem" -out "$work/tls/cert.pem" 2>/dev/null
cat "$work/tls/cert.pem" "$work/tls/key.pem" >"$work/tls/haproxy.pem"

password_hash=$(printf '%s' "$user_password" | "$gateway_bin" hash-password)
body=$(tr -d '\n' <"$bench/stub-body.json")

# Renders bench/<template>.in into $work with each at-sign placeholder replaced by the named variable.
render() { python3 "$bench/render.py" "$@"; }
export WORK="$work" BODY="$body" STUB_PORT NGINX_PLAIN_PORT NGINX_TLS_PORT HAPROXY_PLAIN_PORT \
    HAPROXY_TLS_PORT GW_PLAIN_PORT GW_TLS_PORT JWT_SECRET PASSWORD_HASH="$password_hash"
mkdir -p "$work/stub-tmp" "$work/proxy-tmp"
render "$bench/stub-nginx.conf.in" "$work/stub-nginx.conf" WORK STUB_PORT BODY
render "$bench/proxy-nginx.conf.in" "$work/proxy-nginx.conf" WORK STUB_PORT NGINX_PLAIN_PORT NGINX_TLS_PORT
render "$bench/haproxy.cfg.in" "$work/haproxy.cfg" WORK STUB_PORT HAPROXY_PLAIN_PORT HAPROXY_TLS_PORT JWT_SECRET
# Two gateways: logging.level warn (the contenders) and info (the default: one access-log
# line per request), on their own ports; the info one only serves the logging comparison.
LOG_LEVEL=warn render "$bench/gateway.yaml.in" "$work/gateway-warn.yaml" \
    WORK STUB_PORT GW_PLAIN_PORT GW_TLS_PORT PASSWORD_HASH LOG_LEVEL
LOG_LEVEL=info GW_PLAIN_PORT=$GWI_PLAIN_PORT GW_TLS_PORT=$GWI_TLS_PORT render "$bench/gateway.yaml.in" \
    "$work/gateway-info.yaml" WORK STUB_PORT GW_PLAIN_PORT GW_TLS_PORT PASSWORD_HASH LOG_LEVEL
"$gateway_bin" check-config "$work/gateway-warn.yaml" "$work/gateway-info.yaml" >&2
if [[ -n "$BASELINE" ]]; then
    LOG_LEVEL=warn GW_PLAIN_PORT=$GWB_PLAIN_PORT GW_TLS_PORT=$GWB_TLS_PORT render "$bench/gateway.yaml.in" \
        "$work/gateway-base.yaml" WORK STUB_PORT GW_PLAIN_PORT GW_TLS_PORT PASSWORD_HASH LOG_LEVEL
    sed -i 's#gateway-warn-ca.pem#gateway-base-ca.pem#' "$work/gateway-base.yaml"
    "$BASELINE" check-config "$work/gateway-base.yaml" >&2
fi
haproxy -c -q -f "$work/haproxy.cfg" >&2 || die "haproxy.cfg does not validate"

# --- processes ---------------------------------------------------------------------------
wait_http() { # url, extra curl arguments...
    local url="$1"
    shift
    for _ in $(seq 1 100); do
        if curl -s -o /dev/null "$@" "$url"; then return 0; fi
        sleep 0.1
    done
    die "nothing answers on $url"
}
children() { pgrep -P "$1" | tr '\n' ' '; }

start_server stub-nginx nginx -e "$work/stub-nginx.error.log" -p "$work" -c "$work/stub-nginx.conf"
stub_master=$last_pid
start_server proxy-nginx nginx -e "$work/proxy-nginx.error.log" -p "$work" -c "$work/proxy-nginx.conf"
proxy_master=$last_pid
start_server haproxy haproxy -db -f "$work/haproxy.cfg"
haproxy_pid=$last_pid

start_gateway() { # name plain-port tls-port [binary]; its pid is $last_pid
    local ca="$work/tls/gateway-$1-ca.pem"
    start_server "gateway-$1" "${4:-$gateway_bin}" run --config "$work/gateway-$1.yaml"
    for _ in $(seq 1 100); do
        [[ -s "$ca" ]] && break
        kill -0 "$last_pid" 2>/dev/null || { cat "$work/gateway-$1.log" >&2; die "the gateway exited"; }
        sleep 0.1
    done
    wait_http "http://127.0.0.1:$2/health"
    wait_http "https://127.0.0.1:$3/health" --cacert "$ca"
}
gateway_login() { # plain-port; prints the gateway token
    curl -sf -X POST "http://127.0.0.1:$1/auth/login" \
        -H 'Content-Type: application/json' -H "X-Client-Fingerprint: $fingerprint" \
        -d "{\"username\":\"bench\",\"password\":\"$user_password\"}" |
        python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])'
}

wait_http "http://127.0.0.1:$STUB_PORT/"
wait_http "http://127.0.0.1:$NGINX_PLAIN_PORT/"
wait_http "http://127.0.0.1:$HAPROXY_PLAIN_PORT/"
start_gateway warn "$GW_PLAIN_PORT" "$GW_TLS_PORT"
gateway_pid=$last_pid
gateway_info_pid=""
if [[ "$INFO_ROUND" == 1 ]]; then
    start_gateway info "$GWI_PLAIN_PORT" "$GWI_TLS_PORT"
    gateway_info_pid=$last_pid
fi
gateway_base_pid=""
if [[ -n "$BASELINE" ]]; then
    start_gateway base "$GWB_PLAIN_PORT" "$GWB_TLS_PORT" "$BASELINE"
    gateway_base_pid=$last_pid
fi
stub_workers=$(children "$stub_master")
proxy_workers=$(children "$proxy_master")

# An upstream agent token as ARCP mints them (HS256 with JWT_SECRET, no kid).
agent_token=$(python3 "$bench/agent_token.py")
gateway_token=$(gateway_login "$GW_PLAIN_PORT") || die "login at the gateway failed"
if [[ -n "$gateway_info_pid" ]]; then
    gateway_info_token=$(gateway_login "$GWI_PLAIN_PORT") || die "login at the gateway (info) failed"
fi
if [[ -n "$gateway_base_pid" ]]; then
    gateway_base_token=$(gateway_login "$GWB_PLAIN_PORT") || die "login at the baseline gateway failed"
fi

# --- contenders --------------------------------------------------------------------------
# id -> label, URL, Authorization, fingerprint; CPU is read from the proxy's processes.
contenders=(a_plain b_plain b_tls c_plain c_tls d_plain d_tls e_plain e_tls f_plain f_tls)
declare -A label url auth fp
label[a]="(a) direct stub"; label[b]="(b) nginx proxy_pass"; label[c]="(c) haproxy jwt_verify"
label[d]="(d) gateway admin"; label[e]="(e) gateway agent"; label[f]="(f) gateway public"
label[D]="(d) admin, level info"; label[F]="(f) public, level info"
label[g]="(g) baseline admin"
if [[ -n "$BASELINE" ]]; then
    contenders+=(g_plain g_tls)
    url[g_plain]="http://127.0.0.1:$GWB_PLAIN_PORT/agents/stats"
    url[g_tls]="https://127.0.0.1:$GWB_TLS_PORT/agents/stats"
fi
url[a_plain]="http://127.0.0.1:$STUB_PORT/agents/stats"
url[b_plain]="http://127.0.0.1:$NGINX_PLAIN_PORT/agents/stats"
url[b_tls]="https://127.0.0.1:$NGINX_TLS_PORT/agents/stats"
url[c_plain]="http://127.0.0.1:$HAPROXY_PLAIN_PORT/agents/stats"
url[c_tls]="https://127.0.0.1:$HAPROXY_TLS_PORT/agents/stats"
url[d_plain]="http://127.0.0.1:$GW_PLAIN_PORT/agents/stats"
url[d_tls]="https://127.0.0.1:$GW_TLS_PORT/agents/stats"
url[e_plain]="http://127.0.0.1:$GW_PLAIN_PORT/agents"
url[e_tls]="https://127.0.0.1:$GW_TLS_PORT/agents"
url[f_plain]="http://127.0.0.1:$GW_PLAIN_PORT/public/stats"
url[f_tls]="https://127.0.0.1:$GW_TLS_PORT/public/stats"
url[D_plain]="http://127.0.0.1:$GWI_PLAIN_PORT/agents/stats"
url[F_plain]="http://127.0.0.1:$GWI_PLAIN_PORT/public/stats"
for id in "${contenders[@]}" D_plain F_plain; do auth[$id]=""; fp[$id]=""; done
for id in c_plain c_tls e_plain e_tls; do auth[$id]="Bearer $agent_token"; done
for id in d_plain d_tls; do auth[$id]="Bearer $gateway_token"; fp[$id]="$fingerprint"; done
auth[D_plain]="Bearer ${gateway_info_token:-}"
if [[ -n "$BASELINE" ]]; then
    for id in g_plain g_tls; do auth[$id]="Bearer $gateway_base_token"; fp[$id]="$fingerprint"; done
fi
fp[D_plain]="$fingerprint"
proxy_pids() { # id
    case "${1%_*}" in
    a) echo "$stub_workers" ;;
    b) echo "$proxy_workers" ;;
    c) echo "$haproxy_pid" ;;
    D | E | F) echo "$gateway_info_pid" ;;
    g) echo "$gateway_base_pid" ;;
    *) echo "$gateway_pid" ;;
    esac
}
cpu_line() { # cpu number -> its /proc/stat fields
    awk -v cpu="cpu$1" '$1 == cpu {$1 = ""; print}' /proc/stat
}
cpu_ticks() { # pids... -> utime+stime summed
    local total=0 pid f
    for pid in "$@"; do
        # Fields after the parenthesised command name: utime and stime are the 12th and 13th.
        read -r -a f <<<"$(sed 's/^.*) //' "/proc/$pid/stat")"
        total=$((total + f[11] + f[12]))
    done
    echo "$total"
}

# One load run; appends a CSV row. Arguments: section round id connections duration
# [extra load-generator arguments]; $load_tool is wrk unless set (oha or wrk2 for the half
# rate).
load_tool=wrk
sampler_pid=""
measure() {
    local section="$1" round="$2" id="$3" conc="$4" dur="$5"
    shift 5
    local out="$work/wrk/$section-r$round-$id-c$conc.txt"
    local ppids cpu0 cpu1 stub0 stub1 srv0 srv1 ld0 ld1
    ppids=$(proxy_pids "$id")
    cpu0=$(cpu_ticks $ppids)
    stub0=$(cpu_ticks $stub_workers)
    srv0=$(cpu_line "$SERVER_CPU")
    ld0=$(cpu_line "$LOAD_CPU")
    if [[ "$load_tool" == oha ]]; then
        # Open loop: oha sends at the rate given in "$@" (-q) whatever the answers' pace, and
        # counts latency from when each request was due (--latency-correction).
        local headers=()
        [[ -n "${auth[$id]}" ]] && headers+=(-H "Authorization: ${auth[$id]}")
        [[ -n "${fp[$id]}" ]] && headers+=(-H "X-Client-Fingerprint: ${fp[$id]}")
        rm -f "$out.db"
        if [[ "$SAMPLE" == 1 ]]; then
            taskset -c "$LOAD_CPU" python3 "$bench/sample_cpu.py" "$out.samples" 25 "$SERVER_CPU" $ppids -- $stub_workers &
            sampler_pid=$!
            sleep 0.1
        fi
        date +%s.%N >"$out.started"
        taskset -c "$LOAD_CPU" oha --no-tui --output-format json --latency-correction --insecure \
            --db-url "$out.db" -c "$conc" -z "$dur" "$@" "${headers[@]}" "${url[$id]}" >"$out.json" 2>"$out.err" &
        load_pid=$!
        wait "$load_pid" || die "oha failed: $(cat "$out.err")"
        load_pid=""
        if [[ -n "$sampler_pid" ]]; then
            kill "$sampler_pid"
            wait "$sampler_pid" 2>/dev/null || true
            sampler_pid=""
        fi
        python3 - "$out.json" "$out.db" >"$out" <<'PY'
import json, sqlite3, sys
r = json.load(open(sys.argv[1]))
# Each request's latency (from when it was due) in two parts: waiting in the load generator
# for one of its connections to be free (they all carry a request), and on the wire (sent
# to answered: the proxy, the stub and the kernel between them).
rows = sqlite3.connect(sys.argv[2]).execute(
    "SELECT start - start_latency_correction, end - start FROM oha").fetchall()
def p99(xs):
    xs = sorted(xs)
    return int(xs[min(len(xs) - 1, int(len(xs) * 0.99))] * 1e6) if xs else 0
codes = {int(k): v for k, v in (r.get("statusCodeDistribution") or {}).items()}
# Requests still in flight when the run's time is up are "aborted due to deadline": not errors.
errors = sum(v for k, v in (r.get("errorDistribution") or {}).items() if k != "aborted due to deadline")
ok = sum(codes.values())
lat = r["latencyPercentiles"]
us = lambda s: int((s or 0) * 1e6)
print(f"BENCH_RESULT requests={ok} duration_us={us(r['summary']['total'])} p50_us={us(lat['p50'])} "
      f"p99_us={us(lat['p99'])} max_us={us(r['summary']['slowest'])} "
      f"non2xx={sum(v for k, v in codes.items() if not 200 <= k < 300)} connect=0 read={errors} write=0 timeout=0 "
      f"p99_wait_us={p99([w for w, _ in rows])} p99_wire_us={p99([t for _, t in rows])}")
PY
    else
        BENCH_AUTHORIZATION="${auth[$id]}" BENCH_FINGERPRINT="${fp[$id]}" \
            taskset -c "$LOAD_CPU" "$load_tool" -t1 -c"$conc" -d"$dur" "$@" --latency -s "$bench/wrk.lua" "${url[$id]}" >"$out" 2>&1 &
        load_pid=$!
        wait "$load_pid" || die "$load_tool failed: $(cat "$out")"
        load_pid=""
    fi
    cpu1=$(cpu_ticks $ppids)
    stub1=$(cpu_ticks $stub_workers)
    srv1=$(cpu_line "$SERVER_CPU")
    ld1=$(cpu_line "$LOAD_CPU")
    local line
    line=$(grep '^BENCH_RESULT' "$out") || die "no result from wrk: $(cat "$out")"
    python3 - "$line" "$section" "$round" "$id" "$conc" "$((cpu1 - cpu0))" "$((stub1 - stub0))" "$clk_tck" "${id%_*}" \
        "$srv0" "$srv1" "$ld0" "$ld1" >>"$csv" <<'PY'
import sys
line, section, rnd, cid, conc, cpu, stub, tck, who, srv0, srv1, ld0, ld1 = sys.argv[1:]
def busy_total(a, b):
    # /proc/stat cpuN: user nice system idle iowait irq softirq steal ...
    d = [int(y) - int(x) for x, y in zip(a.split(), b.split())]
    return sum(d) - d[3] - d[4], max(sum(d), 1)
r = dict(kv.split("=") for kv in line.split()[1:])
req, dur = int(r["requests"]), int(r["duration_us"])
us = lambda ticks: int(ticks) / int(tck) * 1e6 / max(req, 1)
stub_us = "" if who == "a" else f"{us(stub):.2f}"
contender, front = cid.split("_")
errors = sum(int(r[k]) for k in ("connect", "read", "write", "timeout"))
# CPU time on the server CPU spent by anything but the proxy and the stub (other
# workloads on a shared machine, kernel threads), and how busy the load generator's CPU was.
srv_busy, srv_total = busy_total(srv0, srv1)
ours = int(cpu) if who == "a" else int(cpu) + int(stub)
other = max(srv_busy - ours, 0) / srv_total * 100
ld_busy, ld_total = busy_total(ld0, ld1)
print(f"{section},{rnd},{contender},{front},{conc},{req},{dur},{req / dur * 1e6:.1f},"
      f"{r['p50_us']},{r['p99_us']},{r['max_us']},{r['non2xx']},{errors},{us(cpu):.2f},{stub_us},"
      f"{other:.1f},{ld_busy / ld_total * 100:.1f},{srv_busy / srv_total * 100:.1f},"
      f"{r.get('p99_wait_us', '')},{r.get('p99_wire_us', '')}")
PY
    tail -n1 "$csv" | awk -F, '{printf "bench:   %-6s r%s %-8s c%-4s %9.0f req/s  p50 %6.2f ms  p99 %6.2f ms  cpu %6.2f us/req  non2xx %s  other %s%%  load %s%%\n", $1, $2, $3"_"$4, $5, $8, $9/1000, $10/1000, $14, $12, $16, $17}' >&2
}

# --- checks: every contender answers 200 with the stub's body; forgeries are refused ----
{
    echo "== checks"
    check() { # name expected-status curl-args...
        local name="$1" want="$2"
        shift 2
        local got
        got=$(curl -s -o "$work/check.body" -w '%{http_code} %{size_download}' "$@")
        printf '  %-46s %s bytes  (want %s)\n' "$name" "$got" "$want"
        [[ "${got%% *}" == "$want" ]] || die "check failed: $name"
    }
    gwca=(--cacert "$work/tls/gateway-warn-ca.pem")
    # The agent token with the first character of its signature changed (all 6 bits count).
    signature="${agent_token##*.}"
    if [[ "${signature:0:1}" == A ]]; then swap=B; else swap=A; fi
    forged="${agent_token%.*}.$swap${signature:1}"
    check "(a) stub GET /agents/stats" 200 "${url[a_plain]}"
    check "(b) nginx plain" 200 "${url[b_plain]}"
    check "(b) nginx TLS" 200 -k "${url[b_tls]}"
    check "(c) haproxy plain, agent token" 200 -H "Authorization: ${auth[c_plain]}" "${url[c_plain]}"
    check "(c) haproxy TLS, agent token" 200 -k -H "Authorization: ${auth[c_tls]}" "${url[c_tls]}"
    check "(c) haproxy, no token" 403 "${url[c_plain]}"
    check "(c) haproxy, forged signature" 403 -H "Authorization: Bearer $forged" "${url[c_plain]}"
    check "(d) gateway admin plain" 200 -H "Authorization: ${auth[d_plain]}" -H "X-Client-Fingerprint: $fingerprint" "${url[d_plain]}"
    check "(d) gateway admin TLS" 200 "${gwca[@]}" -H "Authorization: ${auth[d_tls]}" -H "X-Client-Fingerprint: $fingerprint" "${url[d_tls]}"
    check "(d) gateway admin, wrong fingerprint" 401 -H "Authorization: ${auth[d_plain]}" -H "X-Client-Fingerprint: other" "${url[d_plain]}"
    check "(e) gateway agent plain" 200 -H "Authorization: ${auth[e_plain]}" "${url[e_plain]}"
    check "(e) gateway agent TLS" 200 "${gwca[@]}" -H "Authorization: ${auth[e_tls]}" "${url[e_tls]}"
    check "(e) gateway agent, forged signature" 401 -H "Authorization: Bearer $forged" "${url[e_plain]}"
    check "(f) gateway public plain" 200 "${url[f_plain]}"
    check "(f) gateway public TLS" 200 "${gwca[@]}" "${url[f_tls]}"
    if [[ -n "$gateway_base_pid" ]]; then
        check "(g) baseline gateway admin plain" 200 -H "Authorization: ${auth[g_plain]}" -H "X-Client-Fingerprint: $fingerprint" "${url[g_plain]}"
        check "(g) baseline gateway admin TLS" 200 --cacert "$work/tls/gateway-base-ca.pem" -H "Authorization: ${auth[g_tls]}" -H "X-Client-Fingerprint: $fingerprint" "${url[g_tls]}"
    fi
    if [[ -n "$gateway_info_pid" ]]; then
        check "(d) gateway admin plain, level info" 200 -H "Authorization: ${auth[D_plain]}" -H "X-Client-Fingerprint: $fingerprint" "${url[D_plain]}"
        check "(f) gateway public plain, level info" 200 "${url[F_plain]}"
    fi
    echo "  TLS negotiated by wrk's OpenSSL (client default):"
    for port in "$NGINX_TLS_PORT nginx" "$HAPROXY_TLS_PORT haproxy" "$GW_TLS_PORT gateway"; do
        set -- $port
        printf '    %-8s %s\n' "$2" "$(openssl s_client -connect "127.0.0.1:$1" -brief </dev/null 2>&1 |
            grep -E '^(Protocol version|Ciphersuite)' | tr '\n' ' ')"
    done
} >"$work/checks.txt"
sed 's/^/bench: /' "$work/checks.txt" >&2

gw_threads() { ls "/proc/$gateway_pid/task" | wc -l; }
gw_threads_named() { cat /proc/"$gateway_pid"/task/*/comm 2>/dev/null | grep -c "^$1" || true; }
rss_line() { # label [pid]
    awk -v label="$1" '/^VmRSS|^VmHWM/ {v[$1]=$2} END {printf "  %-40s VmRSS %6d KiB  VmHWM %6d KiB\n", label, v["VmRSS:"], v["VmHWM:"]}' \
        "/proc/${2:-$gateway_pid}/status"
}
sum_rss() { # label pids...
    local label="$1" total=0 pid kb
    shift
    for pid in "$@"; do
        kb=$(awk '/^VmRSS/ {print $2}' "/proc/$pid/status")
        total=$((total + kb))
    done
    printf '  %-40s VmRSS %6d KiB\n' "$label" "$total"
}
{
    echo "== memory"
    rss_line "gateway (warn) before load"
} >>"$memory"

# --- warm-up and main rounds -------------------------------------------------------------
log "warm-up: 1 s per contender at -c128"
for id in "${contenders[@]}"; do
    measure warmup 0 "$id" 128 1s
done
log "main rounds: $ROUNDS x (${contenders[*]}) x connections ($CONNECTIONS), $DURATION each"
for round in $(seq 1 "$ROUNDS"); do
    for conc in $CONNECTIONS; do
        for id in "${contenders[@]}"; do
            measure main "$round" "$id" "$conc" "$DURATION"
        done
    done
done
{
    rss_line "gateway (warn) after the main rounds"
    sum_rss "nginx proxy worker after load" $proxy_workers
    sum_rss "haproxy after load" "$haproxy_pid"
    echo "  gateway threads: $(gw_threads) ($(gw_threads_named arcp-gw-worker) request workers, $(gw_threads_named tokio-r) of the main runtime; CPUs allowed: $(awk '/Cpus_allowed_list/ {print $2}' /proc/$gateway_pid/status))"
} >>"$memory"

# --- p99 at about half of nginx's saturation rate -------------------------------------------
half_note=""
target=""
if [[ "$HALF_RATE" == 1 ]]; then
    saturation=$(python3 - "$csv" <<'PY'
import csv, statistics, sys
rows = [r for r in csv.DictReader(open(sys.argv[1])) if r["section"] == "main" and r["contender"] == "b" and r["front"] == "plain"]
by_conc = {}
for r in rows:
    by_conc.setdefault(r["conc"], []).append(float(r["rps"]))
print(int(max(statistics.median(v) for v in by_conc.values())))
PY
)
    target=$((saturation / 2))
    if command -v oha >/dev/null; then
        half_note="oha -q $target (open loop, constant rate, latency from when each request was due) at -c32"
        log "half rate: $half_note"
        load_tool=oha
        for round in $(seq 1 "$ROUNDS"); do
            for id in b_plain d_plain ${BASELINE:+g_plain}; do
                measure half "$round" "$id" 32 "$SHORT_DURATION" -q "$target"
            done
        done
        load_tool=wrk
    elif command -v wrk2 >/dev/null; then
        half_note="wrk2 -R $target (open loop, constant rate) at -c32"
        log "half rate: $half_note"
        load_tool=wrk2
        for round in $(seq 1 "$ROUNDS"); do
            for id in b_plain d_plain; do
                measure half "$round" "$id" 32 "$SHORT_DURATION" -R"$target"
            done
        done
        load_tool=wrk
    else
        # Closed loop: wrk has no rate limit, so lower the connection count until each
        # contender runs at about half of nginx's saturation rate.
        declare -A half_conc
        for id in b_plain d_plain; do
            best=1 best_gap=-1 prev=0 flat=0
            for conc in 1 2 3 4 6 8 12 16; do
                measure probe 0 "$id" "$conc" 2s
                rps=$(tail -n1 "$csv" | cut -d, -f8)
                gap=$(python3 -c "print(abs($rps - $target))")
                if [[ "$best_gap" == -1 ]] || python3 -c "import sys; sys.exit(0 if $gap < $best_gap else 1)"; then
                    best=$conc best_gap=$gap
                fi
                python3 -c "import sys; sys.exit(0 if $rps > 1.1 * $target else 1)" && break
                # Two probes in a row without 5 % more throughput: this is its saturation.
                if python3 -c "import sys; sys.exit(0 if $rps < 1.05 * $prev else 1)"; then
                    flat=$((flat + 1))
                    ((flat < 2)) || break
                else
                    flat=0
                fi
                prev=$rps
            done
            half_conc[$id]=$best
        done
        half_note="wrk2 is not installed: approximated with wrk (closed loop) at the connection count whose rate is nearest $target req/s (half of nginx's $saturation): nginx -c${half_conc[b_plain]}, gateway admin -c${half_conc[d_plain]}"
        log "half rate: $half_note"
        for round in $(seq 1 "$ROUNDS"); do
            for id in b_plain d_plain; do
                measure half "$round" "$id" "${half_conc[$id]}" "$SHORT_DURATION"
            done
        done
    fi
fi

# --- profile ----------------------------------------------------------------------------
# perf record (cpu-clock, DWARF call graphs) and perf stat (syscalls, context switches) on the
# proxy while wrk runs the same load for 10 s inside the perf window, for the gateway's admin
# route and, for comparison, nginx; per-request counts divide by wrk's requests.
perf_ran=0
ctx_switches() { # pids... -> "voluntary nonvoluntary" summed over their threads
    local pid
    for pid in "$@"; do cat /proc/"$pid"/task/*/status; done |
        awk '/^voluntary_ctxt_switches/ {v += $2} /^nonvoluntary_ctxt_switches/ {n += $2} END {print v + 0, n + 0}'
}
profile() { # id connections
    # Two windows under the same load: perf record alone (so tracepoints do not inflate the
    # profile), then perf stat counting syscalls and context switches.
    local id="$1" conns="$2" ppids out="$work/perf-$1"
    ((conns == 32)) || out="$out-c$conns"
    ppids=$(proxy_pids "$id" | tr ' ' '\n' | grep . | paste -sd,)
    local env=(BENCH_AUTHORIZATION="${auth[$id]}" BENCH_FINGERPRINT="${fp[$id]}")
    taskset -c "$LOAD_CPU" perf record -F 499 --call-graph dwarf,8192 -o "$out.data" -p "$ppids" -- sleep 8.5 \
        >"$out.record.log" 2>&1 &
    local record_pid=$!
    sleep 0.3
    env "${env[@]}" taskset -c "$LOAD_CPU" wrk -t1 -c"$conns" -d8s -s "$bench/wrk.lua" "${url[$id]}" >"$out.wrk.txt" 2>&1 &
    load_pid=$!
    wait "$load_pid" || true
    load_pid=""
    wait "$record_pid" || { log "perf record failed: $(tail -3 "$out.record.log")"; return 1; }
    taskset -c "$LOAD_CPU" perf stat -x, -e 'context-switches,syscalls:sys_enter_recvfrom,syscalls:sys_enter_read,syscalls:sys_enter_readv,syscalls:sys_enter_writev,syscalls:sys_enter_write,syscalls:sys_enter_sendto,syscalls:sys_enter_sendmsg,syscalls:sys_enter_epoll_wait,syscalls:sys_enter_epoll_ctl,syscalls:sys_enter_futex,syscalls:sys_enter_connect,syscalls:sys_enter_accept4,syscalls:sys_enter_close' \
        -o "$out.stat.csv" -p "$ppids" -- sleep 4.5 >"$out.stat.log" 2>&1 &
    local stat_pid=$!
    sleep 0.3
    local cs0 cs1
    cs0=$(ctx_switches $(proxy_pids "$id"))
    env "${env[@]}" taskset -c "$LOAD_CPU" wrk -t1 -c"$conns" -d4s -s "$bench/wrk.lua" "${url[$id]}" >"$out.stat-wrk.txt" 2>&1 &
    load_pid=$!
    wait "$load_pid" || true
    load_pid=""
    cs1=$(ctx_switches $(proxy_pids "$id"))
    wait "$stat_pid" || true
    local requests stat_requests samples cpu_us
    requests=$(sed -n 's/^BENCH_RESULT requests=\([0-9]*\).*/\1/p' "$out.wrk.txt")
    stat_requests=$(sed -n 's/^BENCH_RESULT requests=\([0-9]*\).*/\1/p' "$out.stat-wrk.txt")
    # CPU µs/request of this contender at these connections in the main rounds (median), to put
    # µs on shares.
    cpu_us=$(python3 - "$csv" "${id%_*}" "${id#*_}" "$conns" <<'PY'
import csv, statistics, sys
path, contender, front, conns = sys.argv[1:]
v = [float(r["cpu_us_req"]) for r in csv.DictReader(open(path))
     if r["section"] == "main" and r["contender"] == contender and r["front"] == front and r["conc"] == conns]
print(f"{statistics.median(v):.2f}" if v else "")
PY
)
    {
        echo "== perf: ${label[${id%_*}]} (${id#*_}, -c$conns): perf record over $requests requests (8 s), counts over $stat_requests (4 s)"
        awk -F, -v n="$stat_requests" '$1 ~ /^[0-9]+$/ && $1 > 0 {
            name = $3; sub(/^syscalls:sys_enter_/, "", name)
            line = line sprintf("%s %.2f  ", name, $1 / n)
        } END { print "  per request: " line }' "$out.stat.csv"
        python3 -c "
v0, n0 = map(int, '$cs0'.split()); v1, n1 = map(int, '$cs1'.split()); r = max($stat_requests, 1)
print(f'  context switches per request (/proc): voluntary {(v1 - v0) / r:.2f}, involuntary (preempted) {(n1 - n0) / r:.2f}')"
        perf script -i "$out.data" 2>/dev/null | python3 "$bench/perf_summary.py" --hz 499 --requests "$requests" --us-per-request "$cpu_us"
        echo "  top symbols, self time (perf report --no-children --sort dso,symbol, >= 1.5 %):"
        perf report -i "$out.data" --stdio --no-children --sort dso,symbol -g none --percent-limit 1.5 2>/dev/null |
            grep -v '^#' | grep -v '^$' | sed -E 's/ +- +- *$//; s/ +$//' | cut -c1-150 | head -25 | sed 's/^/  /'
        echo
    } >"$out.summary.txt"
    perf report -i "$out.data" --stdio --no-children -g caller,0.5,callee --percent-limit 2 \
        >"$out.callgraph.txt" 2>/dev/null || true
}
if [[ "$PERF" == 1 || ("$PERF" == auto && -x "$(command -v perf 2>/dev/null)") ]]; then
    log "perf: profiling $PERF_IDS at -c${PERF_CONNECTIONS// /, -c}, 8 s + 4 s each"
    for conns in $PERF_CONNECTIONS; do
        for id in $PERF_IDS; do
            # The report shows the profiles that worked.
            if profile "$id" "$conns"; then perf_ran=1; fi
        done
    done
fi

# --- logging.level info against warn --------------------------------------------------------
# Both gateways run side by side; rounds alternate them (and nginx, for the ratio), so the
# comparison is paired in time instead of minutes apart.
if [[ -n "$gateway_info_pid" ]]; then
    log "logging: gateway at level info (access log to $work/gateway-info.log) against warn, $ROUNDS rounds"
    rss_line "gateway (info) before load" "$gateway_info_pid" >>"$memory"
    for id in D_plain F_plain; do measure warmup 0 "$id" 32 1s; done
    for round in $(seq 1 "$ROUNDS"); do
        for id in b_plain d_plain D_plain f_plain F_plain; do
            measure log "$round" "$id" 32 "$SHORT_DURATION"
        done
    done
    {
        rss_line "gateway (info) after its runs" "$gateway_info_pid"
        echo "  access log written by the info gateway: $(wc -l <"$work/gateway-info.log") lines, $(du -h "$work/gateway-info.log" | cut -f1)"
    } >>"$memory"
fi

# --- report ------------------------------------------------------------------------------
{
    echo "== machine"
    echo "  nproc: $(nproc); $(lscpu | grep 'Model name' | sed 's/  */ /g'); kernel $(uname -r)"
    echo "  arcp-gateway: working tree at $built_from when the script built it (binary from $(date -r "$gateway_bin" '+%F %T'))"
    echo "  $(nginx -v 2>&1); $(haproxy -v | head -1 | cut -d' ' -f1-3); $(wrk -v 2>&1 | head -1 | cut -d' ' -f1-2); $("$gateway_bin" --version)"
    echo "  load: wrk -t1 on CPU $LOAD_CPU; servers (stub + proxy) on CPU $SERVER_CPU; $DURATION per run, $ROUNDS rounds interleaved"
    echo "  (half-rate and info-round runs: $SHORT_DURATION each)"
    echo "  stub body: $(wc -c <"$bench/stub-body.json" | tr -d ' ') bytes JSON (nginx return 200)"
    echo
    cat "$work/checks.txt"
    echo
    python3 "$bench/report.py" "$csv" "$half_note" "${target:-}"
    echo
    cat "$memory"
    if ((perf_ran)); then
        echo
        cat "$work"/perf-*.summary.txt
        echo "  (call graphs: $work/perf-*.callgraph.txt; the cpu-clock event cannot sample with"
        echo "  interrupts off, so time in irq-disabled kernel code shows up at the point they are"
        echo "  re-enabled: _raw_spin_unlock_irqrestore, finish_task_switch)"
    fi
    echo
    echo "total bench time: $(($(date +%s) - started_at)) s; raw results: $csv"
} | tee "$work/report.txt"
