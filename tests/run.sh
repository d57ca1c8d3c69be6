#!/usr/bin/env bash
# The whole test suite, from a fresh machine: installs what the tests need (idempotently),
# then runs the static checks and pytest on this kernel. Arguments go to pytest
# (e.g. `bash tests/run.sh -k ringbuf`).
#
# Python: the suite runs in a venv of its own, made once in the checkout (.venv) from
# Debian's /usr/bin/python3 (a stock Debian python refuses `pip install` outside a venv)
# and reused; tracekit is installed into it editable. Nothing is installed into any
# other Python, so a user's own install of tracekit stays as it is.
#
#   TRACEKIT_REQUIRE_LIVE=1   a live-kernel test that would skip fails instead (CI sets it)
#   TRACEKIT_SKIP_INSTALL=1   do not touch apt/pip (a machine you set up yourself)
#   TRACEKIT_PYTHON=PATH      the interpreter to make the venv from (default /usr/bin/python3)
#   TRACEKIT_VENV=DIR         the venv (default .venv in the checkout)
set -euo pipefail
cd "$(dirname "$0")/.."

base_python="${TRACEKIT_PYTHON:-}"
if [ -z "$base_python" ]; then
    if [ -x /usr/bin/python3 ]; then base_python=/usr/bin/python3; else base_python="$(command -v python3)"; fi
fi
venv="${TRACEKIT_VENV:-$PWD/.venv}"

if [ "${TRACEKIT_SKIP_INSTALL:-0}" != 1 ]; then
    # Debian packages: clang-19/llvm-19 build the BPF test objects, bpftool generates
    # vmlinux.h, libbpf-dev gives BPF headers and the libbpf C baselines/differential tools;
    # systemtap-sdt-dev gives <sys/sdt.h> for the USDT test binaries; qemu-system-x86,
    # kmod, zstd and busybox-static boot the Debian kernels of the matrix (tests/vm), whose
    # packages apt-get downloads (so the lists must exist); python3-venv makes the venv;
    # docker.io and debootstrap build and run the README's container (tests/live/test_docker.py);
    # prometheus is the real server that scrapes the agent (tests/live/test_agent_exporters.py).
    need=()
    for pkg in clang-19 llvm-19 bpftool libbpf-dev gcc systemtap-sdt-dev qemu-system-x86 kmod zstd busybox-static docker.io debootstrap prometheus; do
        dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
    done
    if [ "$base_python" = /usr/bin/python3 ] && ! /usr/bin/python3 -c 'import ensurepip, venv' 2>/dev/null; then
        need+=(python3-venv)
    fi
    if [ ${#need[@]} -gt 0 ] || ! ls /var/lib/apt/lists/*_Packages >/dev/null 2>&1; then
        echo "tests/run.sh: apt-get update" >&2
        apt-get update -qq
    fi
    if [ ${#need[@]} -gt 0 ]; then
        echo "tests/run.sh: installing ${need[*]}" >&2
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
    fi
    if ! "$venv/bin/python" -c 'import sys' 2>/dev/null; then
        echo "tests/run.sh: making the test venv $venv from $base_python" >&2
        rm -rf "$venv"
        "$base_python" -m venv "$venv"
    fi
    echo "tests/run.sh: installing tracekit and the test dependencies into $venv" >&2
    "$venv/bin/python" -m pip install -q --disable-pip-version-check -e '.[test]'
fi

if [ -x "$venv/bin/python" ]; then
    py="$venv/bin/python"
    export PATH="$venv/bin:$PATH"
else  # TRACEKIT_SKIP_INSTALL=1 on a machine without the venv: the python on PATH
    py="$(command -v python3)"
fi
echo "tests/run.sh: python $("$py" -c 'import sys; print(sys.executable, sys.version.split()[0])')" >&2

# Fast static checks first (layers, lint, types): a few seconds, and they fail fast.
if [ -f tests/checks.sh ]; then
    bash tests/checks.sh
fi

exec "$py" -m pytest "$@"
