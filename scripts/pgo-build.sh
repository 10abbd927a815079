#!/usr/bin/env bash
# Profile-guided release build of arcp-gateway (what the container image ships):
#
#   scripts/pgo-build.sh [OUT]   # OUT: target/pgo/arcp-gateway; 2 cores: ~10 min, ~15 from nothing
#
# 1. builds the release binary instrumented (-Cprofile-generate),
# 2. runs it under bench/train.sh (the bench's routes over plain HTTP and TLS; needs nginx,
#    wrk, curl and python3),
# 3. merges what it wrote with llvm-profdata (rustup's llvm-tools component, added when
#    missing), and
# 4. builds the release binary again with that profile (-Cprofile-use).
# Same code, same release profile (fat LTO, one codegen unit); the compiler lays the code out
# and inlines by what ran. docs/performance.md has what it changes. Builds go to
# target/pgo/{gen,use} (their own caches: the flags differ from a plain build's), with an
# explicit --target so build scripts and proc macros are built without the flags.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
out="${1:-$root/target/pgo/arcp-gateway}"
jobs="${CARGO_BUILD_JOBS:-$(nproc)}"
say() { echo "pgo-build: $*" >&2; }
die() { say "error: $*"; exit 1; }
# The flags below are the build's: a caller's encoded flags would replace them, and a profile
# file name would send the counts elsewhere.
unset CARGO_ENCODED_RUSTFLAGS LLVM_PROFILE_FILE

host=$(rustc -vV | sed -n 's/^host: //p')
profdata="$(rustc --print sysroot)/lib/rustlib/$host/bin/llvm-profdata"
if [[ ! -x "$profdata" ]]; then
    command -v rustup >/dev/null || die "no $profdata and no rustup to add llvm-tools"
    say "adding rustup's llvm-tools component (llvm-profdata)"
    rustup component add llvm-tools >&2
fi

dir="$root/target/pgo"
profiles="$dir/profiles"
rm -rf "$profiles"
mkdir -p "$profiles"

say "1/4 instrumented build"
RUSTFLAGS="-Cprofile-generate=$profiles" cargo build --release --locked -j"$jobs" \
    --bin arcp-gateway --target "$host" --target-dir "$dir/gen" >&2
say "2/4 training load"
"$root/bench/train.sh" "$dir/gen/$host/release/arcp-gateway"
shopt -s nullglob
raw=("$profiles"/*.profraw)
((${#raw[@]})) || die "the training run wrote no profile"
say "3/4 merging ${#raw[@]} profile(s)"
"$profdata" merge -o "$dir/merged.profdata" "${raw[@]}"
# The profile must be the gateway's serving requests: its own loop's request parser ran.
"$profdata" show --counts --function=6server2h113parse_request "$dir/merged.profdata" |
    grep -Eq 'Block counts: \[[^]]*[1-9]' ||
    die "the profile has no counts for server::h1::parse_request: not a profile of requests served"
say "4/4 optimised build"
# From scratch: cargo tracks the flags, not the profile they name.
rm -rf "$dir/use"
RUSTFLAGS="-Cprofile-use=$dir/merged.profdata" cargo build --release --locked -j"$jobs" \
    --bin arcp-gateway --target "$host" --target-dir "$dir/use" >&2
mkdir -p "$(dirname "$out")"
install -m 0755 "$dir/use/$host/release/arcp-gateway" "$out"
say "built $out"
