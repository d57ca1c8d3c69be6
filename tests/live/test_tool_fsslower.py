"""tracekit-fsslower / tracekit-ext4slower see the operations of a known workload on a
loop-mounted ext4: `dd bs=1M count=10 oflag=direct conv=fsync` is one open, ten 1 MiB
writes at offsets 0..9 MiB and one fsync of file `f`, all shown with threshold 0.

The hooks (fentry or kprobes on ext4's file operations) are missing on this host (6.18:
neither), so the workload test runs in the qemu guests; here the tool must say exactly
what is missing."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import ROOT, need, require_live, skip_or_fail

pytestmark = pytest.mark.live


def hooks_missing() -> str | None:
    """Why neither fentry nor kprobes can hook ext4_file_write_iter here (None: one can)."""
    from tracekit.hooks.fallback import why_unsupported

    fentry = why_unsupported("fentry", "ext4_file_write_iter")
    kprobe = why_unsupported("kprobe", "ext4_file_write_iter")
    return None if fentry is None or kprobe is None else f"fentry: {fentry}; kprobe: {kprobe}"


def tool_env() -> dict[str, str]:
    if os.environ.get("TRACEKIT_IN_VM") == "1":
        from tests.vm.test_in_guest_tools import _tool_env

        return dict(_tool_env(), PYTHONUNBUFFERED="1")
    return dict(os.environ, PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1")


def tool(name: str, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-c", f"import sys; from tracekit_tools.fsslower import {name}; "
                             f"sys.argv[0] = 'tracekit-{name}'; raise SystemExit({name}(sys.argv[1:]))", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=tool_env())


@contextlib.contextmanager
def ext4_mount(tmp: Path) -> Iterator[Path]:
    img, mnt = tmp / "e.img", tmp / "mnt"
    mnt.mkdir()
    for mod in ("loop", "ext4"):  # module autoloading may not reach the guest's chroot
        subprocess.run(["modprobe", mod], capture_output=True)
    mkfs = shutil.which("mkfs.ext4") or "/usr/sbin/mkfs.ext4"
    if not os.path.exists(mkfs):
        skip_or_fail("no mkfs.ext4 (e2fsprogs) to make the test filesystem")
    with open(img, "wb") as f:
        f.truncate(64 << 20)
    subprocess.run([mkfs, "-q", "-F", str(img)], check=True, capture_output=True)
    res = subprocess.run(["mount", "-o", "loop", str(img), str(mnt)], capture_output=True, text=True)
    if res.returncode != 0:
        skip_or_fail(f"cannot loop-mount an ext4 image: {res.stderr.strip()}")
    from tracekit.hooks import fallback

    fallback.reset()  # hook answers memoized before the ext4 module was loaded are stale
    try:
        yield mnt
    finally:
        subprocess.run(["umount", str(mnt)], capture_output=True)


def wait_banner(proc: subprocess.Popen[str], lines: int) -> list[str]:
    assert proc.stdout is not None
    got = [proc.stdout.readline() for _ in range(lines)]
    if not got[-1]:
        raise AssertionError(proc.communicate(timeout=30)[1])
    return got


def stop(proc: subprocess.Popen[str]) -> str:
    time.sleep(0.5)  # the last records reach the reader
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0 and "Traceback" not in err, err
    return out


def dd(mnt: Path) -> None:
    subprocess.run(["dd", "if=/dev/zero", f"of={mnt}/f", "bs=1M", "count=10", "oflag=direct", "conv=fsync"],
                   check=True, capture_output=True)


def test_missing_hooks_are_said_precisely(tmp_path) -> None:
    require_live()
    with ext4_mount(tmp_path):  # ext4 registered (a module on Debian): the hooks decide
        why = hooks_missing()
        proc = tool("fsslower", "-t", "ext4", "-d", "1")
        out, err = proc.communicate(timeout=300)
    if why is None:  # a kernel with the hooks (the guests): the tool runs and ends cleanly
        assert proc.returncode == 0, err
        assert out.startswith("Tracing ext4 operations slower than 10 ms for 1 secs.\n"), out
        return
    assert proc.returncode == 1 and out == ""
    assert "no hook for 'read_entry' works on this kernel" in err
    assert "fentry/ext4_file_read_iter" in err and "kprobe/ext4_file_read_iter" in err
    assert "Traceback" not in err


def test_an_unregistered_filesystem_is_named() -> None:
    from tracekit.probes.fsslower import FILESYSTEMS, _registered

    absent = [fs for fs in sorted(FILESYSTEMS) if not _registered(fs)]
    if not absent:
        return  # every filesystem tracekit knows is registered here: nothing to say
    fs = absent[0]
    proc = tool("fsslower", "-t", fs, "-d", "1")
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 1
    assert f"{fs} is not in /proc/filesystems" in err and f"modprobe {fs}" in err


def test_dd_on_ext4_rows(tmp_path) -> None:
    require_live()
    with ext4_mount(tmp_path) as mnt:  # first: ext4 may be a module, loaded by the mount
        why = hooks_missing()
        need("kprobes", why is None, why or "")
        proc = tool("ext4slower", "0")
        banner = wait_banner(proc, 2)
        assert banner[0] == "Tracing ext4 operations\n"
        assert banner[1].split() == ["TIME", "COMM", "PID", "T", "BYTES", "OFF_KB", "LAT(ms)", "FILENAME"]
        dd(mnt)
        out = stop(proc)
    rows = [line.split() for line in out.splitlines() if line.split()[1:2] == ["dd"]]
    mine = [r for r in rows if r[-1] == "f"]
    types = [r[3] for r in mine]
    assert types.count("O") == 1 and types.count("S") == 1, out
    writes = [r for r in mine if r[3] == "W"]
    assert [(int(r[4]), int(r[5])) for r in writes] == [(1048576, k * 1024) for k in range(10)], out
    assert types.index("O") < types.index("W") and types[-1] == "S"


def test_fsslower_json_names_the_fsync_range(tmp_path) -> None:
    require_live()
    with ext4_mount(tmp_path) as mnt:
        why = hooks_missing()
        need("kprobes", why is None, why or "")
        proc = tool("fsslower", "-t", "ext4", "-m", "0", "--json")
        # start-up under qemu's emulation takes a minute or more (kallsyms scans per hook)
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and not _attached(proc.pid) and proc.poll() is None:
            time.sleep(0.1)
        dd(mnt)
        out = stop(proc)
    evs = [json.loads(line) for line in out.splitlines()]
    mine = [e for e in evs if e["comm"] == "dd" and e["file"] == "f"]
    fsyncs = [e for e in mine if e["op"] == "fsync"]
    assert len(fsyncs) == 1 and fsyncs[0]["type"] == "F" and fsyncs[0]["bytes"] == (1 << 63) - 1
    assert sum(1 for e in mine if e["op"] == "write") == 10


def _attached(pid: int) -> bool:
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return False
    n = 0
    for fd in fds:
        with contextlib.suppress(OSError):
            n += os.readlink(f"/proc/{pid}/fd/{fd}") in ("anon_inode:bpf_link", "anon_inode:[perf_event]")
    return n >= 8  # every entry and exit hook


def test_kprobe_programs_pass_the_verifier_here() -> None:
    """This host cannot attach kprobes, but it loads them: the fallback programs' CO-RE
    and verifier checks run on every kernel, not only in the guests."""
    require_live()
    import tracekit
    from tracekit.probes import path

    obj = tracekit.open(str(path("fsslower")))
    try:
        for p in obj.programs.values():
            p.autoload = p.attach_kind in ("kprobe", "kretprobe")
            if p.autoload:
                p.set_attach_target("ext4_file_read_iter", check=False)
        obj.load()
        assert sorted(p.name for p in obj.programs.values() if p.loaded) == sorted(
            f"{k}_{op}" for k in ("kprobe", "kretprobe") for op in ("read", "write", "open", "fsync"))
    finally:
        obj.close()
