"""kprobe, kretprobe, ksyscall, kretsyscall, kprobe.multi, uprobe and uretprobe, live.

Runs on this host (uprobes; kprobes are absent here and must fail clearly) and inside the
6.1/6.12 qemu guests (tests/vm/test_in_guest_attach.py runs this file there), where
every kind must fire on a known trigger and leave nothing behind once detached.

On a kernel known to have a feature (the guests' Debian 6.1/6.12) a missing feature is a
failure; elsewhere (this 6.18 host has no kprobes) the test skips and says what is missing.
"""

from __future__ import annotations

import errno
import hashlib
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

import tracekit
from tests.support import (
    BUILD_DIR,
    OBJECTS_SRC,
    SERIES,
    kernel_function,
    need,
    prebuilt,
    require_live,
)
from tracekit.errors import AttachError, NotSupportedError
from tracekit.hooks import kprobe, uprobe
from tracekit.kernel.syscalls import bpf as _bpf

pytestmark = pytest.mark.live

LACKING = {"kprobe.multi": {"6.1"}}
NOT_A_PID = 0x7FFFFFF0  # above any pid_max: getpgid answers ESRCH
UNLINKAT = kernel_function("do_unlinkat")  # filename_unlinkat on 7.x




def target_binary() -> str:
    """tests/objects/attach_target.c compiled natively (cached by content)."""
    env = os.environ.get("TRACEKIT_PREBUILT_ATTACH_TARGET")
    if env:
        return env
    src = OBJECTS_SRC / "attach_target.c"
    out = BUILD_DIR / f"attach_target-{hashlib.sha256(src.read_bytes()).hexdigest()[:16]}"
    if not out.exists():
        cc = shutil.which(os.environ.get("CLANG", "clang-19")) or shutil.which("cc")
        assert cc, "no C compiler for tests/objects/attach_target.c"
        out.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run([cc, "-O1", "-g", "-o", f"{out}.tmp", str(src)], check=True)
        os.rename(f"{out}.tmp", out)
    return str(out)


def kprobes_available() -> bool:
    return kprobe.kprobe_pmu_available() or os.path.exists("/sys/kernel/tracing/kprobe_events")


def handles() -> dict[str, int]:
    """Our open BPF link and perf event fds, by kind."""
    out = {"bpf_link": 0, "perf_event": 0}
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target == "anon_inode:bpf_link":
            out["bpf_link"] += 1
        elif target == "anon_inode:[perf_event]":
            out["perf_event"] += 1
    return out


def link_ids() -> set[int]:
    ids, cur = set(), 0
    while (cur := _bpf.link_get_next_id(cur)) is not None:
        ids.add(cur)
    return ids


def assert_gone(link_id: int | None) -> None:
    if link_id is None:
        return
    for _ in range(50):  # the kernel frees a link shortly after its last fd goes
        if link_id not in link_ids():
            return
        time.sleep(0.02)
    raise AssertionError(f"BPF link {link_id} still exists after detach")


@pytest.fixture(scope="module")
def probes():
    require_live()
    obj = tracekit.open(prebuilt("attach_probes.bpf.c"))
    obj.rodata.target_tgid = os.getpid()
    obj.load()
    yield obj
    obj.close()


@pytest.fixture
def bss(probes):
    for name in probes.bss.variables():
        probes.bss[name] = b"" if name == "kp_name" else 0
    return probes.bss


def unlink_missing(tag: str) -> str:
    name = f"tk-missing-{tag}-{os.getpid()}"
    with pytest.raises(FileNotFoundError):
        os.unlink(name)
    return name


def getpgid_missing(arg: int = NOT_A_PID) -> None:
    with pytest.raises(ProcessLookupError):
        os.getpgid(arg)


# --------------------------------------------------------------------------- kprobes

@pytest.mark.parametrize("way", ["pmu+link", "pmu+ioctl", "kprobe_events"])
def test_kprobe_and_kretprobe_fire_with_arguments_and_leave_nothing(probes, bss, way: str) -> None:
    need("kprobes", kprobes_available(), "no kprobe PMU and no kprobe_events")
    if way != "kprobe_events":
        need("kprobes", kprobe.kprobe_pmu_available(), "no kprobe PMU")
    before = handles()
    events_before = kprobe.list_legacy_events("kprobe")
    legacy = way == "kprobe_events"
    ioctl = way == "pmu+ioctl"
    cookie = 0 if ioctl else 0xC0FFEE_0000_0001
    kp = kprobe.attach_kprobe(probes.programs["kp_unlinkat"].fd, UNLINKAT, cookie=cookie, legacy=legacy,
                              force_ioctl=ioctl)
    krp = kprobe.attach_kprobe(probes.programs["krp_unlinkat"].fd, UNLINKAT, retprobe=True, legacy=legacy,
                               force_ioctl=ioctl)
    ids = [lk.info().id if lk.is_bpf_link else None for lk in (kp, krp)]
    assert kp.is_bpf_link is (not ioctl) and (kp.kind, kp.target) == ("kprobe", UNLINKAT)
    if legacy:
        ours = [n for n in kprobe.list_legacy_events("kprobe") if n not in events_before]
        assert len(ours) == 2 and all(n.startswith(f"tk_{os.getpid()}_") for n in ours)
    try:
        name = unlink_missing("kprobe")
        assert bss.kp_hits == 1 and bss.krp_hits == 1
        assert bss.kp_dfd == -100  # AT_FDCWD
        assert bss.kp_name == name
        assert bss.kp_cookie == cookie
        assert bss.krp_ret == -errno.ENOENT
    finally:
        kp.close()
        krp.close()
    unlink_missing("after")
    assert bss.kp_hits == 1 and bss.krp_hits == 1  # detached: no more hits
    assert handles() == before
    assert kprobe.list_legacy_events("kprobe") == events_before
    for i in ids:
        assert_gone(i)


def test_kprobe_with_offset_and_program_attach(probes, bss) -> None:
    need("kprobes", kprobes_available(), "no kprobe PMU and no kprobe_events")
    # Program.attach dispatches on SEC("kprobe/do_unlinkat"); an offset of 0 is the entry
    link = probes.programs["kp_unlinkat"].attach(f"{UNLINKAT}+0")
    try:
        assert link.target == UNLINKAT
        unlink_missing("offset")
        assert bss.kp_hits == 1 and bss.kp_dfd == -100
    finally:
        link.close()


def test_ksyscall_and_kretsyscall_see_the_syscall_argument_and_result(probes, bss) -> None:
    need("kprobes", kprobes_available(), "no kprobe PMU and no kprobe_events")
    before = handles()
    assert kprobe.syscall_prefix() == "__x64_sys_"  # x86-64 kernels since 4.17 wrap syscalls
    ks = probes.programs["ks_getpgid"].attach(cookie=42)
    krs = probes.programs["krs_getpgid"].attach()
    try:
        assert (ks.kind, ks.target, krs.kind) == ("ksyscall", "__x64_sys_getpgid", "kretsyscall")
        getpgid_missing()
        assert (bss.ks_hits, bss.ks_arg, bss.ks_cookie) == (1, NOT_A_PID, 42)
        assert (bss.krs_hits, bss.krs_ret) == (1, -errno.ESRCH)
    finally:
        ks.close()
        krs.close()
    assert handles() == before


def _kallsyms_addr(name: str) -> int:
    with open("/proc/kallsyms") as f:
        for line in f:
            parts = line.split()
            if len(parts) >= 3 and parts[2] == name:
                return int(parts[0], 16)
    raise AssertionError(f"{name} not in /proc/kallsyms")


def test_kprobe_multi_fires_with_cookie_and_ip_or_fails_clearly(probes, bss) -> None:
    need("kprobes", kprobes_available(), "no kprobe PMU and no kprobe_events")
    prog = probes.programs["km_getpgid"]
    if SERIES in LACKING["kprobe.multi"]:
        with pytest.raises(NotSupportedError, match="kprobe.multi.*CONFIG_FPROBE"):
            prog.attach()
        return
    before = handles()
    try:
        link = prog.attach(cookie=0xABCD)
    except NotSupportedError as e:
        need("kprobe.multi", False, str(e))
        raise
    ret = probes.programs["kmr_getpgid"].attach()
    try:
        assert link.info().id in link_ids()
        getpgid_missing()
        assert (bss.km_hits, bss.km_cookie) == (1, 0xABCD)
        addr = _kallsyms_addr("__x64_sys_getpgid")
        assert bss.km_ip in (addr, addr + 4)  # +4 past ENDBR64 on IBT kernels
        assert (bss.kmr_hits, bss.kmr_ret) == (1, -errno.ESRCH)
    finally:
        link.close()
        ret.close()
    assert handles() == before


def test_kprobe_multi_glob_covers_every_match(probes, bss) -> None:
    need("kprobes", kprobes_available(), "no kprobe PMU and no kprobe_events")
    if SERIES in LACKING["kprobe.multi"]:
        pytest.skip(f"Linux {SERIES} has no kprobe.multi (checked by the test above)")
    names = kprobe.match_functions("__x64_sys_get*id")
    triggers = {"__x64_sys_getpgid": getpgid_missing, "__x64_sys_getsid": lambda: os.getsid(0),
                "__x64_sys_getresuid": os.getresuid, "__x64_sys_getresgid": os.getresgid,
                "__x64_sys_getuid": os.getuid, "__x64_sys_getgid": os.getgid}
    assert "__x64_sys_getpgid" in names and not any("*" in n for n in names)
    called = [f for n, f in triggers.items() if n in names]
    assert len(called) >= 3, names
    try:
        link = kprobe.attach_kprobe_multi(probes.programs["km_getpgid"].fd, "__x64_sys_get*id")
    except NotSupportedError as e:
        need("kprobe.multi", False, str(e))
        raise
    try:
        for f in called:
            f()
        assert bss.km_hits >= len(called)
    finally:
        link.close()
    # an explicit list with one cookie per function
    link = kprobe.attach_kprobe_multi(probes.programs["km_getpgid"].fd, ["__x64_sys_getpgid", "__x64_sys_getsid"],
                                      cookies=[0x51, 0x52])
    try:
        bss.km_hits = 0
        os.getsid(0)
        assert (bss.km_hits, bss.km_cookie) == (1, 0x52)
        getpgid_missing()
        assert (bss.km_hits, bss.km_cookie) == (2, 0x51)
    finally:
        link.close()
    with pytest.raises(AttachError, match="one cookie each"):
        kprobe.attach_kprobe_multi(probes.programs["km_getpgid"].fd, ["__x64_sys_getsid"], cookies=[1, 2])
    with pytest.raises(AttachError, match="no kernel function matches"):
        kprobe.attach_kprobe_multi(probes.programs["km_getpgid"].fd, "tk_no_such_function_*")


def test_kprobe_errors_are_clear(probes) -> None:
    fd = probes.programs["kp_unlinkat"].fd
    if not kprobes_available():
        # this host: no kprobe PMU, no kprobe_events
        with pytest.raises(NotSupportedError, match="kprobe"):
            kprobe.attach_kprobe(fd, UNLINKAT)
        with pytest.raises(NotSupportedError, match="kprobe"):
            probes.programs["ks_getpgid"].attach()
        return
    before = handles()
    with pytest.raises(AttachError, match="tk_no_such_function"):
        kprobe.attach_kprobe(fd, "tk_no_such_function")
    with pytest.raises(AttachError, match="tk_no_such_function"):
        kprobe.attach_kprobe(fd, "tk_no_such_function", legacy=True)
    assert handles() == before
    assert kprobe.list_legacy_events("kprobe") == [] or all(
        not n.startswith(f"tk_{os.getpid()}_") for n in kprobe.list_legacy_events("kprobe"))


def test_kprobe_target_parsing() -> None:
    assert kprobe.parse_kprobe_target("do_sys_openat2") == ("do_sys_openat2", 0)
    assert kprobe.parse_kprobe_target("tcp_v4_connect+0x10") == ("tcp_v4_connect", 16)
    with pytest.raises(AttachError, match="offset"):
        kprobe.parse_kprobe_target("f+zz")
    with pytest.raises(AttachError, match="invalid kprobe target"):
        kprobe.parse_kprobe_target("bad name")


# --------------------------------------------------------------------------- uprobes

def test_uprobe_and_uretprobe_on_libc_called_by_this_process(probes, bss) -> None:
    need("uprobes", uprobe.pmu_type("uprobe") is not None, "no uprobe PMU")
    before = handles()
    up = probes.programs["up_func"].attach("libc.so.6:getpgid", cookie=7)
    urp = probes.programs["urp_func"].attach("libc.so.6:getpgid")
    try:
        assert up.kind == "uprobe" and up.target.endswith("libc.so.6:getpgid")
        getpgid_missing(NOT_A_PID)
        assert (bss.up_hits, bss.up_arg, bss.up_cookie) == (1, NOT_A_PID, 7)
        assert (bss.urp_hits, bss.urp_ret) == (1, -1)  # libc returns -1 and sets errno
    finally:
        up.close()
        urp.close()
    getpgid_missing()
    assert bss.up_hits == 1
    assert handles() == before


def _spawn(binary: str) -> subprocess.Popen[str]:
    return subprocess.Popen([binary], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)


def _ask(p: subprocess.Popen[str], x: int) -> int:
    assert p.stdin and p.stdout
    p.stdin.write(f"{x}\n")
    p.stdin.flush()
    return int(p.stdout.readline())


@pytest.mark.parametrize("legacy", [False, True], ids=["pmu", "uprobe_events"])
def test_uprobe_on_a_test_binary_limited_to_one_pid(legacy: bool) -> None:
    require_live()
    if legacy:
        need("uprobe_events", os.path.exists("/sys/kernel/tracing/uprobe_events")
             or _tracefs_has("uprobe_events"), "no tracefs uprobe_events")
    binary = target_binary()
    off = uprobe.symbol_offset(binary, "tk_uprobe_target")
    assert off > 0
    obj = tracekit.open(prebuilt("attach_probes.bpf.c"))
    for name, p in obj.programs.items():
        p.autoload = name in ("up_func", "urp_func")
    obj.rodata.target_tgid = 0  # filtered by the attachment's pid instead
    a, b = _spawn(binary), _spawn(binary)
    try:
        with obj:
            obj.load()
            before = handles()
            events_before = kprobe.list_legacy_events("uprobe") if legacy else []
            up = uprobe.attach_uprobe(obj.programs["up_func"].fd, binary, "tk_uprobe_target", pid=a.pid,
                                      legacy=legacy)
            urp = uprobe.attach_uprobe(obj.programs["urp_func"].fd, binary, "tk_uprobe_target", retprobe=True,
                                       pid=a.pid, legacy=legacy)
            try:
                if legacy:
                    ours = [n for n in kprobe.list_legacy_events("uprobe") if n not in events_before]
                    assert len(ours) == 2
                assert _ask(b, 9) == 19  # the other process: not counted
                assert _ask(a, 5) == 11
                assert (obj.bss.up_hits, obj.bss.up_arg) == (1, 5)
                assert (obj.bss.urp_hits, obj.bss.urp_ret) == (1, 11)
            finally:
                up.close()
                urp.close()
            assert handles() == before
            if legacy:
                assert kprobe.list_legacy_events("uprobe") == events_before
    finally:
        for p in (a, b):
            p.kill()
            p.wait()


def _tracefs_has(name: str) -> bool:
    from tracekit.kernel.syscalls import fs

    try:
        return os.path.exists(os.path.join(fs.tracefs_path(), name))
    except Exception:
        return False


def test_legacy_events_of_dead_processes_are_swept() -> None:
    require_live()
    need("uprobe_events", _tracefs_has("uprobe_events"), "no tracefs uprobe_events")
    binary = target_binary()
    off = uprobe.symbol_offset(binary, "tk_uprobe_target")
    dead = subprocess.Popen(["true"])
    dead.wait()
    from tracekit.kernel.syscalls import fs

    path = os.path.join(fs.tracefs_path(), "uprobe_events")
    stale = f"tk_{dead.pid}_0_stale"
    fd = os.open(path, os.O_WRONLY | os.O_APPEND)
    try:
        os.write(fd, f"p:{kprobe.LEGACY_GROUP}/{stale} {binary}:{off:#x}\n".encode())
    finally:
        os.close(fd)
    assert stale in kprobe.list_legacy_events("uprobe")
    assert stale in kprobe.sweep_stale_events("uprobe")
    assert stale not in kprobe.list_legacy_events("uprobe")


def test_uprobe_targets_and_errors(probes) -> None:
    with pytest.raises(AttachError, match="no uprobe target"):
        probes.programs["up_func"].attach()  # bare SEC("uprobe"), no target given
    t = uprobe.parse_uprobe_target("/usr/bin/bash:readline+0x4")
    assert (t.path, t.func, t.offset) == ("/usr/bin/bash", "readline", 4)
    assert uprobe.parse_uprobe_target("libc.so.6:0x1234") == uprobe.UprobeTarget("libc.so.6", "", 0x1234)
    with pytest.raises(AttachError, match="path:function"):
        uprobe.parse_uprobe_target("nocolon")
    with pytest.raises(AttachError, match="not found"):
        uprobe.resolve_path("libtk-nonexistent.so.1")
    libc = uprobe.resolve_path("libc.so.6")
    assert Path(libc).is_file()
    with pytest.raises(AttachError, match="no function 'tk_no_such_function'"):
        uprobe.symbol_offset(libc, "tk_no_such_function")
    # .dynsym of a stripped library, checked against pyelftools' own symbol objects
    from elftools.elf.elffile import ELFFile

    with open(libc, "rb") as f:
        elf = ELFFile(f)
        (sym,) = [s for s in elf.get_section_by_name(".dynsym").iter_symbols() if s.name == "getpgid"]
        seg = next(g for g in elf.iter_segments() if g["p_type"] == "PT_LOAD"
                   and g["p_vaddr"] <= sym["st_value"] < g["p_vaddr"] + g["p_memsz"])
    assert uprobe.symbol_offset(libc, "getpgid") == sym["st_value"] - seg["p_vaddr"] + seg["p_offset"]
    # .symtab of an unstripped executable
    binary = target_binary()
    [(vaddr, bind)] = uprobe.function_symbols(binary, "tk_uprobe_target")
    assert bind == "STB_GLOBAL" and vaddr > 0


def test_stale_kprobe_events_are_swept_on_the_next_attach(probes) -> None:
    """A kprobe_events entry left by a dead tracekit process goes away when we next attach."""
    need("kprobes", _tracefs_has("kprobe_events"), "no tracefs kprobe_events")
    from tracekit.kernel.syscalls import fs

    dead = subprocess.Popen(["true"])
    dead.wait()
    stale = f"tk_{dead.pid}_0_stale_unlinkat"
    fd = os.open(os.path.join(fs.tracefs_path(), "kprobe_events"), os.O_WRONLY | os.O_APPEND)
    try:
        os.write(fd, f"p:{kprobe.LEGACY_GROUP}/{stale} {UNLINKAT}\n".encode())
    finally:
        os.close(fd)
    assert stale in kprobe.list_legacy_events("kprobe")
    with kprobe.attach_kprobe(probes.programs["kp_unlinkat"].fd, UNLINKAT, legacy=True):
        names = kprobe.list_legacy_events("kprobe")
        assert stale not in names
        assert any(n.startswith(f"tk_{os.getpid()}_") for n in names)  # ours, live
    assert not any(n.startswith(f"tk_{os.getpid()}_") for n in kprobe.list_legacy_events("kprobe"))
