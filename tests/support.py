"""Helpers shared by the test suites: live-kernel gating and building BPF test objects."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
OBJECTS_SRC = Path(__file__).resolve().parent / "objects"
BUILD_DIR = Path(os.environ.get("TRACEKIT_TEST_BUILD", ROOT / "build" / "tests"))
CLANG = os.environ.get("CLANG", "clang-19")


def require_live(what: str = "root and a BPF-capable kernel") -> None:
    """Skip unless we can talk to the kernel; fail instead when live tests are required."""
    reason = None
    if os.geteuid() != 0:
        reason = "not running as root"
    elif not os.path.exists("/sys/kernel/btf/vmlinux"):
        reason = "kernel has no /sys/kernel/btf/vmlinux"
    if reason:
        skip_or_fail(f"live test needs {what}: {reason}")


def skip_or_fail(reason: str) -> None:
    """``pytest.skip`` — or ``pytest.fail`` when TRACEKIT_REQUIRE_LIVE=1 demands live runs."""
    if os.environ.get("TRACEKIT_REQUIRE_LIVE") == "1":
        pytest.fail(f"TRACEKIT_REQUIRE_LIVE=1 but: {reason}")
    pytest.skip(reason)


def vmlinux_h() -> Path:
    """vmlinux.h for the running kernel, generated once by bpftool and cached by BTF hash.

    ``TRACEKIT_VMLINUX_H`` overrides it: the qemu guests use the host's header, so the
    objects the host built (CO-RE: they run on any kernel) are found in the shared cache
    instead of being recompiled slowly under emulation.
    """
    forced = os.environ.get("TRACEKIT_VMLINUX_H")
    if forced:
        return Path(forced)
    src = Path("/sys/kernel/btf/vmlinux")
    digest = hashlib.sha256(src.read_bytes()).hexdigest()[:16]
    out = BUILD_DIR / f"vmlinux-{digest}" / "vmlinux.h"
    if not out.exists():
        out.parent.mkdir(parents=True, exist_ok=True)
        bpftool = shutil.which("bpftool") or "/usr/sbin/bpftool"
        text = subprocess.run(
            [bpftool, "btf", "dump", "file", str(src), "format", "c"],
            check=True, capture_output=True,
        ).stdout
        tmp = out.with_suffix(".tmp")
        tmp.write_bytes(text)
        tmp.rename(out)
    return out


def build_bpf_object(
    source: str | Path,
    *,
    defines: list[str] | tuple[str, ...] = (),
    out_name: str | None = None,
    use_vmlinux_h: bool = True,
    extra_flags: list[str] | tuple[str, ...] = (),
) -> Path:
    """Compile a test BPF C file (relative to tests/objects/) with clang-19, cached by content."""
    src = Path(source)
    if not src.is_absolute():
        src = OBJECTS_SRC / src
    if shutil.which(CLANG) is None:
        pytest.fail(f"{CLANG} not found: run the README's test command, which installs it")
    flags = ["-g", "-O2", "-target", "bpf", "-D__TARGET_ARCH_x86", *extra_flags]
    flags += [f"-D{d}" for d in defines]
    incs = ["-I", str(src.parent), "-I", str(ROOT / "tracekit" / "probes")]
    if use_vmlinux_h:
        incs += ["-I", str(vmlinux_h().parent)]
    key = hashlib.sha256(
        src.read_bytes() + repr((flags, incs)).encode()
        + b"".join(p.read_bytes() for p in sorted(src.parent.glob("*.h")))
    ).hexdigest()[:16]
    name = out_name or (src.name.removesuffix(".c") + ("-" + "-".join(defines) if defines else ""))
    out = BUILD_DIR / "objects" / f"{name}-{key}.o"
    if not out.exists():
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_suffix(".tmp.o")
        subprocess.run([CLANG, *flags, *incs, "-c", str(src), "-o", str(tmp)], check=True)
        tmp.rename(out)
    return out
