#!/usr/bin/env bash
# The static checks that keep the layout, run before pytest by tests/run.sh (fail fast, a few
# seconds each; all configured in pyproject.toml):
#   1. lint-imports  layers import only downwards; the pure layer makes no syscalls; tools use
#                    only the public API ([tool.importlinter])
#   2. ruff check    tracekit/ and tools/ ([tool.ruff]; never `ruff format` here)
#   3. mypy          tracekit/ and tools/, --strict on the pure layer ([tool.mypy])
# Each runs through python3 -m so that the interpreter of the tests is the one checking.
set -euo pipefail
cd "$(dirname "$0")/.."

run() {
    local what=$1; shift
    local out t0=$SECONDS
    if ! out=$("$@" 2>&1); then
        printf '%s\n' "$out" >&2
        echo "tests/checks.sh: $what failed (configuration: pyproject.toml)" >&2
        exit 1
    fi
    echo "checks: $what ok ($((SECONDS - t0))s)"
}

# tools/ is the package tracekit_tools (package-dir); the editable install makes it importable.
# Without one (a fresh checkout), point a symlink at it so lint-imports still finds it.
if ! python3 -c 'import tracekit_tools' 2>/dev/null; then
    shim=$(mktemp -d)
    trap 'rm -rf "$shim"' EXIT
    ln -s "$PWD/tools" "$shim/tracekit_tools"
    export PYTHONPATH="$PWD:$shim${PYTHONPATH:+:$PYTHONPATH}"
fi
run lint-imports python3 -c 'import sys; from importlinter.cli import lint_imports_command; sys.exit(lint_imports_command())' --no-cache --no-logo
run ruff python3 -m ruff check --no-cache --quiet tracekit tools
run mypy python3 -m mypy
