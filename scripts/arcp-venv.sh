#!/usr/bin/env bash
# Create (once) a Python virtualenv holding the real, unmodified ARCP server and client
# (PyPI `arcp-py==2.1.2`) for the end-to-end tests.
#
# Usage: scripts/arcp-venv.sh
#
#   ARCP_VENV   where the venv lives (default: <repo root>/target/arcp-venv)
#   PYTHON      interpreter used to create it (default: python3)
#
# Idempotent: a marker file inside the venv is written only after a successful install,
# so a second run is a fast no-op, and an interrupted run is redone from scratch.
# Concurrent runs are serialised with flock(1) when it is available.
# All progress goes to stderr; the last (and only) line on stdout is the venv's absolute path.
set -euo pipefail

readonly ARCP_PY_SPEC="arcp-py==2.1.2"

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${ARCP_VENV:-$repo_root/target/arcp-venv}"
python="${PYTHON:-python3}"

# Make the path absolute without requiring it to exist yet.
case "$venv" in
    /*) ;;
    *) venv="$PWD/$venv" ;;
esac

marker="$venv/.arcp-venv-ok"
marker_content="$ARCP_PY_SPEC"

is_ready() {
    [[ -x "$venv/bin/python" && -f "$marker" && "$(cat "$marker")" == "$marker_content" ]]
}

if is_ready; then
    printf '%s\n' "$venv"
    exit 0
fi

mkdir -p "$(dirname "$venv")"

# Serialise concurrent first runs (e.g. several test binaries starting at once).
if command -v flock >/dev/null 2>&1; then
    exec 9>"$venv.lock"
    flock 9
    if is_ready; then
        printf '%s\n' "$venv"
        exit 0
    fi
fi

if ! command -v "$python" >/dev/null 2>&1; then
    echo "arcp-venv: '$python' not found on PATH" >&2
    exit 1
fi

echo "arcp-venv: creating $venv with $ARCP_PY_SPEC" >&2
rm -f "$marker"
# --clear: a half-built venv from an interrupted run is thrown away.
if ! "$python" -m venv --clear "$venv" >&2; then
    echo "arcp-venv: '$python -m venv' failed (on Debian/Ubuntu install the python3-venv package)" >&2
    exit 1
fi

"$venv/bin/python" -m pip install --disable-pip-version-check --no-input "$ARCP_PY_SPEC" >&2

# Smoke check: the package imports and is the pinned version.
"$venv/bin/python" - <<'EOF' >&2
import importlib.metadata as md
import arcp.client  # noqa: F401  (the client must import without server configuration)
v = md.version("arcp-py")
assert v == "2.1.2", f"unexpected arcp-py version {v}"
print(f"arcp-venv: arcp-py {v} installed")
EOF

printf '%s\n' "$marker_content" >"$marker"
printf '%s\n' "$venv"
