#!/usr/bin/env bash
# Start or stop a real, unmodified ARCP 2.1.2 server (`python -m arcp`) on 127.0.0.1 for tests.
#
# Usage:
#   scripts/arcp-upstream.sh start --state-dir DIR [--port N]
#   scripts/arcp-upstream.sh stop  --state-dir DIR
#
# start: ensures the venv (scripts/arcp-venv.sh), picks a free loopback port unless --port is
#   given, launches the server in its own session/process group with cwd DIR, and waits
#   (ARCP_START_TIMEOUT seconds, default 30, polling every 100 ms) for GET /health -> 200.
#   On success prints the port on stdout and exits 0, leaving the server running.
#   On failure prints the tail of the log to stderr, kills the server and exits non-zero.
#   Files in DIR: arcp.pid, arcp.port, arcp.log (server stdout+stderr), logs/, data/.
# stop: SIGTERM, up to 5 s grace, then SIGKILL; removes arcp.pid. Not running is not an error.
#
# Server environment (the variables ARCP 2.1.2 requires, plus test settings). Taken from the
# caller's environment when set, otherwise these test defaults:
#   ENVIRONMENT=development  JWT_SECRET=test-only-jwt-secret-0123456789abcdef0123
#   JWT_ALGORITHM=HS256      JWT_EXPIRE_MINUTES=60     SESSION_TIMEOUT=30
#   ADMIN_USERNAME=admin     ADMIN_PASSWORD=test-admin-pass
#   AGENT_KEYS=test-agent-key-0001,test-agent-key-0002
#   ALLOWED_AGENT_TYPES=security,monitoring,automation,networking,testing
# Always forced: TZ=UTC, ARCP_HOST=127.0.0.1, ARCP_PORT, ARCP_LOGS_DIR/ARCP_DATA_DIR inside DIR,
#   REDIS_HOST= REDIS_PORT= REDIS_DB= (empty: in-memory state, a stray .env cannot enable Redis),
#   FORWARDED_ALLOW_IPS=127.0.0.1 (uvicorn trusts X-Forwarded-For only from a loopback peer).
# Any other ARCP variable in the caller's environment (MAX_SESSIONS, RATE_LIMIT_BURST, ...)
# is inherited unchanged.
set -euo pipefail

script_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

usage() {
    echo "usage: $0 start --state-dir DIR [--port N] | stop --state-dir DIR" >&2
    exit 2
}

log() { echo "arcp-upstream: $*" >&2; }

[[ $# -ge 1 ]] || usage
cmd="$1"
shift
state_dir=""
port=""
while [[ $# -gt 0 ]]; do
    case "$1" in
        --state-dir) [[ $# -ge 2 ]] || usage; state_dir="$2"; shift 2 ;;
        --state-dir=*) state_dir="${1#*=}"; shift ;;
        --port) [[ $# -ge 2 ]] || usage; port="$2"; shift 2 ;;
        --port=*) port="${1#*=}"; shift ;;
        *) usage ;;
    esac
done
[[ -n "$state_dir" ]] || usage
if [[ -n "$port" && ! "$port" =~ ^[0-9]+$ ]]; then
    log "--port must be a number, got '$port'"
    exit 2
fi

pid_file="$state_dir/arcp.pid"
port_file="$state_dir/arcp.port"
log_file="$state_dir/arcp.log"

# True if PID exists and is not a zombie (an exited child not yet reaped still answers kill -0).
alive() {
    local pid="$1" state
    kill -0 "$pid" 2>/dev/null || return 1
    if [[ -r "/proc/$pid/stat" ]]; then
        state="$(sed -E 's/^[0-9]+ \(.*\) ([A-Za-z]).*/\1/' "/proc/$pid/stat" 2>/dev/null || true)"
        [[ "$state" != "Z" ]] || return 1
    fi
    return 0
}

# True if PID is alive and is our server (guards against PID reuse after a crash).
is_our_server() {
    local pid="$1"
    [[ "$pid" =~ ^[0-9]+$ ]] || return 1
    alive "$pid" || return 1
    if [[ -r "/proc/$pid/cmdline" ]]; then
        tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q -- "-m arcp" || return 1
    fi
    return 0
}

# Signal the server's process group (it is a session leader, so pgid == pid) and the pid itself.
signal_server() {
    local sig="$1" pid="$2"
    kill "-$sig" -- "-$pid" 2>/dev/null || true
    kill "-$sig" "$pid" 2>/dev/null || true
}

# SIGTERM, wait up to 5 s, then SIGKILL. The caller has checked that PID is ours.
terminate() {
    local pid="$1" i
    alive "$pid" || return 0
    signal_server TERM "$pid"
    for ((i = 0; i < 50; i++)); do
        alive "$pid" || return 0
        sleep 0.1
    done
    log "pid $pid did not exit within 5 s of SIGTERM; sending SIGKILL"
    signal_server KILL "$pid"
    for ((i = 0; i < 20; i++)); do
        alive "$pid" || return 0
        sleep 0.1
    done
    log "pid $pid still present after SIGKILL"
    return 1
}

cmd_stop() {
    if [[ ! -f "$pid_file" ]]; then
        log "not running (no $pid_file)"
        return 0
    fi
    local pid
    pid="$(cat "$pid_file" 2>/dev/null || true)"
    if is_our_server "$pid"; then
        terminate "$pid" || true
    fi
    rm -f "$pid_file"
    log "stopped${pid:+ (pid $pid)}"
}

# 0 when nothing listens on 127.0.0.1:$1 (a bind succeeds). SO_REUSEADDR, as uvicorn binds:
# connections of a server that just stopped linger in TIME_WAIT on that port, and they must not
# stop a restart on the same port (only a listening socket does).
port_free() {
    python3 -c 'import socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
try:
    s.bind(("127.0.0.1", int(sys.argv[1])))
except OSError:
    sys.exit(1)
finally:
    s.close()' "$1"
}

free_port() {
    python3 -c 'import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])
s.close()'
}

# 0 when GET /health answers 200.
healthy() {
    local url="http://127.0.0.1:$1/health"
    if command -v curl >/dev/null 2>&1; then
        [[ "$(curl -s -o /dev/null -w '%{http_code}' --noproxy '*' --max-time 1 "$url" 2>/dev/null)" == "200" ]]
    else
        python3 -c 'import sys, urllib.request
h = urllib.request.ProxyHandler({})
try:
    r = urllib.request.build_opener(h).open(sys.argv[1], timeout=1)
    sys.exit(0 if r.status == 200 else 1)
except Exception:
    sys.exit(1)' "$url"
    fi
}

# Launch one server on $1; sets $server_pid. The launcher (the venv's python) makes itself a
# session leader, writes its own pid, then execs `python -m arcp`, so the pid in the file is
# exactly the server's, killable on its own or as a group.
launch() {
    local p="$1" i
    rm -f "$pid_file"
    (
        cd "$state_dir"
        export ENVIRONMENT="${ENVIRONMENT:-development}"
        export TZ=UTC
        export ALLOWED_AGENT_TYPES="${ALLOWED_AGENT_TYPES:-security,monitoring,automation,networking,testing}"
        export JWT_SECRET="${JWT_SECRET:-test-only-jwt-secret-0123456789abcdef0123}"
        export JWT_ALGORITHM="${JWT_ALGORITHM:-HS256}"
        export JWT_EXPIRE_MINUTES="${JWT_EXPIRE_MINUTES:-60}"
        export SESSION_TIMEOUT="${SESSION_TIMEOUT:-30}"
        export ADMIN_USERNAME="${ADMIN_USERNAME:-admin}"
        export ADMIN_PASSWORD="${ADMIN_PASSWORD:-test-admin-pass}"
        export AGENT_KEYS="${AGENT_KEYS:-test-agent-key-0001,test-agent-key-0002}"
        export ARCP_HOST=127.0.0.1
        export ARCP_PORT="$p"
        export ARCP_LOGS_DIR="$state_dir/logs"
        export ARCP_DATA_DIR="$state_dir/data"
        export REDIS_HOST="" REDIS_PORT="" REDIS_DB=""
        export FORWARDED_ALLOW_IPS=127.0.0.1
        export PYTHONUNBUFFERED=1
        exec "$venv/bin/python" -c '
import os, sys
try:
    os.setsid()
except OSError:
    pass  # already a process-group leader
tmp = sys.argv[1] + ".tmp"
with open(tmp, "w") as f:
    f.write(f"{os.getpid()}\n")
os.rename(tmp, sys.argv[1])
os.execv(sys.argv[2], [sys.argv[2], "-m", "arcp"])
' "$pid_file" "$venv/bin/python"
    ) >>"$log_file" 2>&1 </dev/null &
    local launcher=$!
    for ((i = 0; i < 100; i++)); do
        [[ -s "$pid_file" ]] && break
        kill -0 "$launcher" 2>/dev/null || break
        sleep 0.05
    done
    if [[ -s "$pid_file" ]]; then
        server_pid="$(cat "$pid_file")"
    else
        server_pid="$launcher"
    fi
}

cmd_start() {
    mkdir -p "$state_dir"
    state_dir="$(cd "$state_dir" && pwd)"
    pid_file="$state_dir/arcp.pid"
    port_file="$state_dir/arcp.port"
    log_file="$state_dir/arcp.log"

    if [[ -f "$pid_file" ]] && is_our_server "$(cat "$pid_file")"; then
        log "already running (pid $(cat "$pid_file")) for $state_dir; stop it first"
        exit 1
    fi
    rm -f "$pid_file"
    mkdir -p "$state_dir/logs" "$state_dir/data"

    venv="$("$script_dir/arcp-venv.sh" | tail -n 1)"

    local timeout="${ARCP_START_TIMEOUT:-30}"
    local attempts=1 attempt p="" died=0 log_offset
    server_pid=""
    # A port picked here could be taken before the server binds it; retry with a new one.
    if [[ -z "$port" ]]; then
        attempts=3
    fi
    for ((attempt = 1; attempt <= attempts; attempt++)); do
        p="${port:-$(free_port)}"
        if ! port_free "$p"; then
            log "127.0.0.1:$p is already in use"
            [[ -z "$port" ]] && continue
            exit 1
        fi
        printf '%s\n' "$p" >"$port_file"
        echo "=== arcp-upstream start $(date -u +%Y-%m-%dT%H:%M:%SZ) port $p ===" >>"$log_file"
        log_offset="$(wc -c <"$log_file")"
        launch "$p"
        local deadline=$((SECONDS + timeout))
        died=0
        # Healthy means: /health answers 200 AND our own server logged that it bound this port
        # (so a different process answering on the port is never mistaken for ours).
        while ((SECONDS < deadline)); do
            if tail -c "+$((log_offset + 1))" "$log_file" | grep -q "Uvicorn running on http://127.0.0.1:$p " &&
                alive "$server_pid" && healthy "$p"; then
                log "healthy on 127.0.0.1:$p (pid $server_pid, log $log_file)"
                printf '%s\n' "$p"
                return 0
            fi
            if ! alive "$server_pid"; then
                died=1
                break
            fi
            sleep 0.1
        done
        if ((died)) && ((attempt < attempts)) && tail -c "+$((log_offset + 1))" "$log_file" | grep -qi "address already in use"; then
            log "port $p was taken; retrying"
            continue
        fi
        break
    done

    if [[ -z "$server_pid" ]]; then
        log "no free port found"
        exit 1
    fi
    if ((died)); then
        log "server exited before becoming healthy on port $p; last log lines:"
    else
        log "server not healthy within ${timeout}s on port $p; last log lines:"
    fi
    tail -n 40 "$log_file" >&2 || true
    terminate "$server_pid" || true
    rm -f "$pid_file"
    exit 1
}

case "$cmd" in
    start) cmd_start ;;
    stop) cmd_stop ;;
    *) usage ;;
esac
