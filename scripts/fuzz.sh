#!/usr/bin/env bash
# Runs the cargo-fuzz targets of fuzz/ for a given time each, one after the other, at the
# lowest CPU priority. Installs cargo-fuzz (and the nightly toolchain it needs) if missing.
#
#   scripts/fuzz.sh TARGET|all SECONDS [LIBFUZZER-ARGS...]
#
# Each target starts from its committed corpus (fuzz/corpus/TARGET, read only: new inputs go
# to target/fuzz-corpus/TARGET) and fails the script on the first crash, whose input is
# saved under fuzz/artifacts/TARGET/. Built without a sanitizer: the gateway forbids
# `unsafe`, so the targets check panics and their invariants, not memory errors.
set -euo pipefail
cd "$(dirname "$0")/.."

usage() {
  echo "usage: scripts/fuzz.sh TARGET|all SECONDS [LIBFUZZER-ARGS...]" >&2
  exit 2
}
[[ $# -ge 2 ]] || usage
target=$1
seconds=$2
shift 2
[[ $seconds =~ ^[0-9]+$ ]] || usage

if ! rustup run nightly rustc --version >/dev/null 2>&1; then
  echo "fuzz.sh: installing the nightly toolchain" >&2
  rustup toolchain install nightly --profile minimal
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "fuzz.sh: installing cargo-fuzz" >&2
  nice -n 19 cargo install --locked -j2 cargo-fuzz
fi

mapfile -t all < <(cd fuzz && cargo +nightly fuzz list)
if [[ $target == all ]]; then
  targets=("${all[@]}")
elif printf '%s\n' "${all[@]}" | grep -qx -- "$target"; then
  targets=("$target")
else
  echo "fuzz.sh: unknown target '$target' (targets: ${all[*]})" >&2
  exit 2
fi

cd fuzz
# Targets that write scratch files (config_parse) write them here; libFuzzer ends the
# process without running destructors, so the directory is removed on the way out.
scratch=$(mktemp -d "${TMPDIR:-/tmp}/arcp-gateway-fuzz.XXXXXX")
trap 'rm -rf "$scratch"' EXIT
export TMPDIR=$scratch
export CARGO_BUILD_JOBS=${CARGO_BUILD_JOBS:-2}
# Build once (for `all`, one cargo invocation builds every target on shared dependencies).
if [[ $target == all ]]; then
  nice -n 19 cargo +nightly fuzz build --sanitizer none
else
  nice -n 19 cargo +nightly fuzz build --sanitizer none "$target"
fi

for t in "${targets[@]}"; do
  work=target/fuzz-corpus/$t
  mkdir -p "$work" "corpus/$t"
  echo "fuzz.sh: $t for ${seconds}s" >&2
  # -max_len: configurations and tokens are small; -rss_limit_mb and -timeout catch
  # blow-ups; stdin is closed so nothing a config names can wait on it.
  nice -n 19 cargo +nightly fuzz run --sanitizer none "$t" "$work" "corpus/$t" -- \
    -max_total_time="$seconds" -max_len=4096 -timeout=10 -rss_limit_mb=2048 \
    -print_final_stats=1 "$@" </dev/null
done
