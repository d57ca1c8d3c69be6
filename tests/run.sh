#!/usr/bin/env bash
# The whole test suite, from a fresh machine: installs what the tests need (idempotently),
# then runs pytest on this kernel. Arguments go to pytest (e.g. `bash tests/run.sh -k ringbuf`).
#
#   TRACEKIT_REQUIRE_LIVE=1   a live-kernel test that would skip fails instead (CI sets it)
#   TRACEKIT_SKIP_INSTALL=1   do not touch apt/pip (a machine you set up yourself)
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "${TRACEKIT_SKIP_INSTALL:-0}" != 1 ]; then
    # Debian packages: clang-19/llvm-19 build the BPF test objects, bpftool generates
    # vmlinux.h, libbpf-dev gives BPF headers and the libbpf C baselines/differential tools;
    # qemu-system-x86, kmod, zstd and busybox-static boot the Debian 6.1/6.12 kernels of
    # the matrix (tests/vm), whose packages apt-get downloads (so the lists must exist).
    need=()
    for pkg in clang-19 llvm-19 bpftool libbpf-dev gcc qemu-system-x86 kmod zstd busybox-static; do
        dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
    done
    if [ ${#need[@]} -gt 0 ] || ! ls /var/lib/apt/lists/*_Packages >/dev/null 2>&1; then
        apt-get update -qq
    fi
    if [ ${#need[@]} -gt 0 ]; then
        echo "tests/run.sh: installing ${need[*]}" >&2
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
    fi
    python3 -m pip install -q --disable-pip-version-check -e '.[test]'
fi

exec python3 -m pytest "$@"
