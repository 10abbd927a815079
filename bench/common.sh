# Shared by bench/run.sh and bench/instructions.sh (sourced, not run): messages, ports,
# secrets, and the processes a benchmark starts, stopped on exit whatever happens.

log() { echo "bench: $*" >&2; }
die() { echo "bench: error: $*" >&2; exit 1; }

# Prints N free loopback ports.
free_ports() {
    python3 - "$1" <<'PY'
import socket, sys
socks = [socket.socket() for _ in range(int(sys.argv[1]))]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(*[s.getsockname()[1] for s in socks])
PY
}

# Installs with apt-get (as root) whichever of the named commands is missing.
need() {
    local missing=() tool
    for tool in "$@"; do command -v "$tool" >/dev/null || missing+=("$tool"); done
    ((${#missing[@]})) || return 0
    [[ $(id -u) -eq 0 ]] || die "missing ${missing[*]}; run as root so apt-get can install them"
    log "installing ${missing[*]} with apt-get"
    apt-get update -q >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}" >&2
}

hex() { head -c "$1" /dev/urandom | od -An -tx1 | tr -d ' \n'; }

# Processes to stop on exit ($pids), and a running load generator ($load_pid), if any.
pids=()
load_pid=""
cleanup() {
    local status=$? pid
    trap - EXIT INT TERM
    [[ -n "$load_pid" ]] && kill -TERM "$load_pid" 2>/dev/null || true
    [[ -n "${sampler_pid:-}" ]] && kill -TERM "$sampler_pid" 2>/dev/null || true
    for pid in "${pids[@]}"; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    # valgrind writes its last dump on the way out: up to 10 s each.
    for pid in "${pids[@]}"; do
        for _ in $(seq 1 100); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    log "stopped${work:+ (results in $work)}"
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Starts a server pinned to the server CPU, output in $work/<name>.log; its pid is $last_pid.
start_server() {
    local name="$1"
    shift
    taskset -c "$SERVER_CPU" "$@" >"$work/$name.log" 2>&1 &
    last_pid=$!
    pids+=("$last_pid")
}

# Builds the gateway under test the way the container image does and sets $gateway_bin:
# profile-guided (scripts/pgo-build.sh: instrumented build, bench/train.sh, optimised build;
# on two cores ~10 minutes when only the crate changed), or with BENCH_PGO=0 a plain release
# build (~4 minutes).
# $built_from says which commit, and how.
build_gateway() {
    if [[ "${BENCH_PGO:-1}" == 1 ]]; then
        log "building arcp-gateway (release, profile-guided: scripts/pgo-build.sh)"
        need nginx wrk curl
        "$root/scripts/pgo-build.sh" "$root/target/pgo/arcp-gateway"
        gateway_bin="$root/target/pgo/arcp-gateway"
        build_kind="profile-guided"
    else
        log "building arcp-gateway (release, no profile: BENCH_PGO=0)"
        cargo build --release -j2 --bin arcp-gateway >&2
        gateway_bin="$root/target/release/arcp-gateway"
        build_kind="no profile"
    fi
    built_from="$(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown)"
    git -C "$root" diff --quiet HEAD -- src Cargo.toml Cargo.lock 2>/dev/null ||
        built_from="$built_from + uncommitted changes in src/ or Cargo.*"
    built_from="$built_from ($build_kind)"
}
