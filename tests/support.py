"""Helpers shared by the test suites: live-kernel gating and building BPF test objects."""

from __future__ import annotations

import functools
import hashlib
import os
import platform
import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
OBJECTS_SRC = Path(__file__).resolve().parent / "objects"
BUILD_DIR = Path(os.environ.get("TRACEKIT_TEST_BUILD", ROOT / "build" / "tests"))
CLANG = os.environ.get("CLANG", "clang-19")


def open_fds() -> set[int]:
    """This process's open file descriptors (the listing's own fd excluded)."""
    return {int(f) for f in os.listdir("/proc/self/fd") if os.path.exists(f"/proc/self/fd/{f}")}


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


#: kernel series (``major.minor``) each feature is known to exist on: on those a missing
#: feature is a bug, so :func:`need` fails instead of skipping (the matrix kernels are
#: Debian's 6.1, 6.12 and sid's newest, 7.2 — each entry checked in its guest; this host
#: is 6.18 without kprobes, fentry or module BTF). tests/vm/test_in_guest_attach.py fails
#: when sid's kernel moves to a series not listed here.
KNOWN_FEATURES: dict[str, set[str]] = {
    "kprobes": {"6.1", "6.12", "7.2"},
    "kprobe.multi": {"6.12", "7.2"},
    "uprobes": {"6.1", "6.12", "6.18", "7.2"},
    "uprobe_events": {"6.1", "6.12", "7.2"},
    "fentry": {"6.1", "6.12", "7.2"},
    "module BTF": {"6.1", "6.12", "7.2"},
}
SERIES = ".".join(platform.release().split(".")[:2]).split("-")[0]


#: functions the live suites hook that a newer kernel renamed, oldest name first
#: (Linux 7.x: do_unlinkat -> filename_unlinkat, same arguments)
RENAMED_FUNCTIONS: dict[str, tuple[str, ...]] = {
    "do_unlinkat": ("do_unlinkat", "filename_unlinkat"),
}


def kernel_function(name: str) -> str:
    """The name under which the running kernel has function ``name`` (see
    RENAMED_FUNCTIONS): the first candidate its vmlinux BTF names, else ``name``."""
    try:
        data = _vmlinux_btf()
    except OSError:
        return name
    for candidate in RENAMED_FUNCTIONS.get(name, (name,)):
        if b"\0" + candidate.encode() + b"\0" in data:
            return candidate
    return name


@functools.lru_cache(maxsize=1)
def _vmlinux_btf() -> bytes:
    return Path("/sys/kernel/btf/vmlinux").read_bytes()


def need(feature: str, ok: bool, why: str = "") -> None:
    """Skip when this kernel lacks ``feature`` — but fail on a kernel known to have it.

    With ``TRACEKIT_REQUIRE_LIVE=1`` (CI) a skip is allowed only for a test file that the
    same run also executes inside the qemu guests (tests/vm/test_in_guest_attach.py's
    GUEST_SUITE), where the feature exists: a real kernel still runs it.
    """
    if ok:
        return
    if SERIES in KNOWN_FEATURES.get(feature, ()):
        pytest.fail(f"Linux {SERIES} ({platform.release()}) is known to have {feature}, yet: {why}")
    reason = f"this kernel ({platform.release()}) lacks {feature}: {why}"
    if os.environ.get("TRACEKIT_REQUIRE_LIVE") == "1" and os.environ.get("TRACEKIT_IN_VM") != "1":
        from tests.vm.test_in_guest_attach import GUEST_SUITE

        current = os.environ.get("PYTEST_CURRENT_TEST", "").split("::")[0]
        if current not in GUEST_SUITE:
            pytest.fail(f"TRACEKIT_REQUIRE_LIVE=1 but {reason}, and {current} does not run in the qemu guests")
        reason += " (runs in the 6.1/6.12/sid qemu guests: tests/vm/test_in_guest_attach.py)"
    pytest.skip(reason)


def prebuilt(name: str) -> str:
    """A test object built on the host; inside the qemu guests the runner passes its path
    in ``TRACEKIT_PREBUILT_<NAME>`` (no compiler runs under emulation)."""
    env = os.environ.get("TRACEKIT_PREBUILT_" + re.sub(r"\W", "_", name.split(".")[0]).upper())
    return env if env else str(build_bpf_object(name))


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
