"""USDT probes, live: libbpf-style programs (SEC("usdt"), <bpf/usdt.bpf.h>) loaded unchanged.

The target is tests/objects/usdt_target.c (gcc, <sys/sdt.h>): for every integer x it reads
it fires the tk:* probes with arguments derived from x, so each argument's exact value is
known.  tk_any stores what bpf_usdt_arg() returns in the hits slot named by its USDT
cookie.  Also probed: Debian's /usr/bin/python3 (python:gc__start, guarded by a
semaphore).
"""

from __future__ import annotations

import errno
import os
import struct
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import tracekit
from tests.support import build_bpf_object, open_fds, require_live
from tests.unit.test_usdt_notes import USDT_BPF_FLAGS, build_usdt_target
from tracekit.errors import AttachError, NotSupportedError, USDTError
from tracekit.hooks import usdt
from tracekit.kernel import features
from tracekit.obj.usdt import encode_spec
from tracekit.uapi import AttachType

pytestmark = pytest.mark.live

# struct hit of usdt_probe.bpf.c
HIT = struct.Struct("<12q12iQqQQiI")
SLOTS = 8


def hit(obj: Any, slot: int) -> dict[str, Any]:
    v = HIT.unpack(obj.maps["hits"].lookup(slot))
    n = v[25]
    return {"args": list(v[:max(n, 0)]), "err": list(v[12:12 + max(n, 0)]), "count": v[24], "arg_cnt": n,
            "cookie": v[26], "ip": v[27], "bad_arg": v[28], "pid": v[29]}


def clear_hits(obj: Any) -> None:
    for i in range(SLOTS):
        obj.maps["hits"].update(i, bytes(HIT.size))


class Target:
    """The usdt_target process: ``fire(x)`` makes it fire every probe once, returns the
    semaphore value it printed."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.proc = subprocess.Popen([path], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.pid = self.proc.pid

    def fire(self, x: int) -> int:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(f"{x}\n")
        self.proc.stdin.flush()
        got, sema = self.proc.stdout.readline().split()
        assert int(got) == x
        return int(sema)

    def close(self) -> None:
        if self.proc.stdin:
            self.proc.stdin.close()
        self.proc.wait(timeout=10)
        if self.proc.stdout:
            self.proc.stdout.close()


@pytest.fixture(scope="module")
def binary() -> str:
    return build_usdt_target()


@pytest.fixture(scope="module", params=["uprobe.multi", "uprobes"])
def obj(request: pytest.FixtureRequest) -> Iterator[Any]:
    """The object loaded the default way (uprobe.multi programs on this 6.6+ kernel: one
    link per attachment) and as on kernels without uprobe.multi (one uprobe per site)."""
    require_live()
    o = tracekit.open(str(build_bpf_object("usdt_probe.bpf.c", extra_flags=USDT_BPF_FLAGS)))
    if request.param == "uprobes":
        with features.override(attach_type_trace_uprobe_multi=False):
            o.load()
    else:
        if not usdt.uprobe_multi_for_usdt():
            pytest.skip("this kernel has no uprobe.multi links")
        o.load()
    assert (o.programs["tk_any"].spec.expected_attach_type == AttachType.TRACE_UPROBE_MULTI) == (
        request.param == "uprobe.multi")
    o.multi = request.param == "uprobe.multi"
    yield o
    o.close()


@pytest.fixture
def target(binary: str) -> Iterator[Target]:
    t = Target(binary)
    yield t
    t.close()


@pytest.fixture
def fresh(obj: Any) -> Any:
    clear_hits(obj)
    return obj


def test_arguments_of_every_kind(fresh: Any, target: Target, binary: str) -> None:
    """Register, memory (base + offset, stack, %rip-relative symbol) and constant arguments
    of several sizes and signedness come out of bpf_usdt_arg() exactly."""
    prog = fresh.programs["tk_any"]
    names = ["mem", "regs", "global", "stack", "twice", "sema"]
    links = [prog.attach_usdt(binary, "tk", n, pid=target.pid, cookie=i) for i, n in enumerate(names)]
    try:
        assert [len(lk.sites) for lk in links] == [1, 1, 1, 1, 2, 1]
        # one uprobe.multi link for both sites of tk:twice, or one uprobe each
        assert [len(lk.links) for lk in links] == [1, 1, 1, 1, 1 if fresh.multi else 2, 1]
        x = 3
        assert target.fire(x) == 1  # the semaphore of tk:sema is up while attached
        want = {
            "mem": [x * 1000, x + 1, -x, x + 100],  # s64, s32, s16, u8 members through %rdi
            "regs": [x, -3 * x, (x + 200) & 0xFF, 42],  # %edi, %rsi, %dl (u8), $42
            "global": [7 * x, -7],  # tk_counter(%rip), $-7
            "stack": [-x],  # a volatile local at -4(%rsp)
            "twice": [x + 1],  # the second site (p->b) fires last
            "sema": [x, 1],  # x and the semaphore's own value
        }
        for i, n in enumerate(names):
            h = hit(fresh, i)
            assert h["args"] == want[n], n
            assert h["err"] == [0] * len(want[n]) and h["arg_cnt"] == len(want[n])
            assert h["bad_arg"] == -errno.ENOENT  # one past arg_cnt
            assert h["cookie"] == i and h["pid"] == target.pid
            assert h["count"] == (2 if n == "twice" else 1)
            # %rip at the probe: where the note's site is mapped in the process
            site = links[i].sites[-1]
            assert h["ip"] == usdt._runtime_ip(target.pid, binary, site.note.file_offset)
        # the kernel's spec map holds exactly what tracekit encoded for each site
        f = usdt.usdt_file(binary)
        for lk in links:
            for site in lk.sites:
                assert fresh.maps["__bpf_usdt_specs"].lookup(site.spec_id) == encode_spec(
                    f.resolved_args(site.note), lk.cookie)
    finally:
        for lk in links:
            lk.close()
    clear_hits(fresh)
    assert target.fire(4) == 0  # detached: semaphore down, nothing recorded
    assert all(hit(fresh, i)["count"] == 0 for i in range(SLOTS))


def test_semaphore_maintained_by_the_kernel(fresh: Any, target: Target, binary: str) -> None:
    """ref_ctr_offset: the kernel raises the semaphore while the probe site is attached,
    also in a process started meanwhile, and the guarded probe fires only then.  It counts
    probe sites, not attachments: a second attachment to the same site shares the kernel's
    uprobe and leaves the count at 1 until the last one goes."""
    prog = fresh.programs["tk_any"]
    assert target.fire(1) == 0
    a = prog.attach_usdt(binary, "tk", "sema", cookie=1)  # every process
    try:
        assert target.fire(2) == 1
        b = prog.attach_usdt(binary, "tk", "sema", cookie=2)
        assert target.fire(3) == 1
        late = Target(binary)
        try:
            assert late.fire(5) == 1
        finally:
            late.close()
        b.close()
        assert target.fire(6) == 1
        assert hit(fresh, 2)["count"] == 2  # x=3 and the late process's x=5
        assert hit(fresh, 1)["count"] == 4 and hit(fresh, 1)["args"] == [6, 1]
    finally:
        a.close()
    assert target.fire(7) == 0


def test_semaphore_through_tracefs_uprobe_events(fresh: Any, target: Target, binary: str) -> None:
    """The legacy attach path: uprobe_events takes the semaphore as PATH:OFFSET(REF_CTR)."""
    from tests.support import need
    from tracekit.hooks import kprobe

    need("uprobe_events", os.path.exists(os.path.join(kprobe._fs.tracefs_path(), "uprobe_events")),
         "no tracefs uprobe_events")
    if fresh.multi:
        with pytest.raises(AttachError, match=r"loaded for uprobe\.multi links"):
            usdt.attach_usdt(fresh.programs["tk_any"].fd, binary, "tk", "sema", pool=usdt.spec_ids_for(fresh),
                             legacy=True, multi=True)
        return
    before = kprobe.list_legacy_events("uprobe")
    assert target.fire(1) == 0
    link = usdt.attach_usdt(fresh.programs["tk_any"].fd, binary, "tk", "sema", pool=usdt.spec_ids_for(fresh),
                            pid=target.pid, cookie=4, legacy=True)
    try:
        assert len(set(kprobe.list_legacy_events("uprobe")) - set(before)) == 1
        assert target.fire(2) == 1
        assert hit(fresh, 4)["args"] == [2, 1]
    finally:
        link.close()
    assert target.fire(3) == 0
    assert not set(kprobe.list_legacy_events("uprobe")) - set(before)


def test_bpf_usdt_macro_program(fresh: Any, target: Target, binary: str) -> None:
    fresh.bss["regs_hits"] = 0
    link = fresh.programs["tk_regs"].attach_usdt(binary, "tk", "regs", pid=target.pid)
    with link:
        target.fire(-12)
    assert (fresh.bss["regs_x"], fresh.bss["regs_y"], fresh.bss["regs_z"], fresh.bss["regs_c"]) == (
        -12, 36, (200 - 12) & 0xFF, 42)
    assert fresh.bss["regs_hits"] == 1


def test_section_target_and_object_attach(binary: str, target: Target) -> None:
    """SEC("usdt/PATH:PROVIDER:NAME") attaches with Object.attach(); closing the object
    detaches and leaves no fd behind."""
    require_live()
    before = open_fds()
    o = tracekit.open(str(build_bpf_object("usdt_probe.bpf.c", extra_flags=USDT_BPF_FLAGS)))
    o.programs["tk_regs"].set_attach_target(f"{binary}:tk:regs")
    o.programs["tk_any"].set_attach_target(f"{binary}:tk:twice")
    links = o.attach()
    assert sorted(type(lk).__name__ for lk in links) == ["USDTLink", "USDTLink"]
    target.fire(9)
    assert o.bss["regs_x"] == 9 and hit(o, 0)["count"] == 2 and hit(o, 0)["args"] == [10]
    o.close()
    assert all(lk.closed for lk in links)
    assert open_fds() == before
    with pytest.raises(AttachError, match="PATH:PROVIDER:NAME"):
        usdt.parse_usdt_target("/bin/true:nothing")


def test_pid_limits_the_attachment(fresh: Any, target: Target, binary: str) -> None:
    other = Target(binary)
    try:
        with fresh.programs["tk_any"].attach_usdt(binary, "tk", "regs", pid=other.pid, cookie=3):
            target.fire(1)
            assert hit(fresh, 3)["count"] == 0
            other.fire(2)
            assert hit(fresh, 3)["count"] == 1 and hit(fresh, 3)["pid"] == other.pid
    finally:
        other.close()


def test_spec_ids_return_to_the_pool(binary: str) -> None:
    """More attachments over time than __bpf_usdt_specs has slots: closed ones give their
    ids back; when all are held, the error says how to get more.  (Two slots: every uprobe
    detach waits for an RCU tasks-trace grace period, ~0.1 s here.)"""
    require_live()
    o = tracekit.open(str(build_bpf_object("usdt_probe.bpf.c", extra_flags=USDT_BPF_FLAGS)))
    o.maps["__bpf_usdt_specs"].max_entries = 2
    o.load()
    try:
        prog = o.programs["tk_any"]
        seen = []
        for i in range(3):
            with prog.attach_usdt(binary, "tk", "regs", cookie=i) as lk:
                seen.append(lk.sites[0].spec_id)
        assert seen == [0, 0, 0]
        held = [prog.attach_usdt(binary, "tk", "regs"), prog.attach_usdt(binary, "tk", "mem")]
        assert sorted(lk.sites[0].spec_id for lk in held) == [0, 1]
        with pytest.raises(AttachError, match=r"all 2 USDT spec slots.*BPF_USDT_MAX_SPEC_CNT"):
            prog.attach_usdt(binary, "tk", "stack")
        held.pop().close()
        held.append(prog.attach_usdt(binary, "tk", "stack"))
        assert sorted(lk.sites[0].spec_id for lk in held) == [0, 1]
    finally:
        o.close()


def test_errors_say_what_to_do(fresh: Any, binary: str) -> None:
    prog = fresh.programs["tk_any"]
    with pytest.raises(USDTError, match=r"scale-index-base.*libbpf 1.7"):
        prog.attach_usdt(binary, "tk", "sib")
    with pytest.raises(AttachError, match=r"no USDT probe tk:nope.*tk:mem"):
        prog.attach_usdt(binary, "tk", "nope")
    with pytest.raises(AttachError, match=r"no .note.stapsdt"):
        prog.attach_usdt("/bin/true", "tk", "mem")
    prog.spec.attach_kind = "uprobe"  # as if declared SEC("uprobe")
    try:
        with pytest.raises(AttachError, match="not a USDT program"):
            prog.attach_usdt(binary, "tk", "mem")
    finally:
        prog.spec.attach_kind = "usdt"
    # nothing half-attached was left: the ids went back (the sib attempt allocated none)
    lk = prog.attach_usdt(binary, "tk", "mem")
    lk.close()


def test_without_bpf_cookies_the_ip_map_is_used(binary: str, target: Target) -> None:
    """Kernels before 5.15: the program finds its spec by IP (LINUX_HAS_BPF_COOKIE is 0),
    tracekit fills __bpf_usdt_ip_to_spec_id with the runtime addresses (a PIE needs a pid)."""
    require_live()
    with features.override(bpf_cookie=False, attach_type_trace_uprobe_multi=False):
        o = tracekit.open(str(build_bpf_object("usdt_probe.bpf.c", extra_flags=USDT_BPF_FLAGS)))
        o.load()
        try:
            prog = o.programs["tk_regs"]
            with pytest.raises(NotSupportedError, match="pass pid="):
                prog.attach_usdt(binary, "tk", "regs")
            link = prog.attach_usdt(binary, "tk", "regs", pid=target.pid)
            ipmap = o.maps["__bpf_usdt_ip_to_spec_id"]
            site = link.sites[0]
            assert site.ip == usdt._runtime_ip(target.pid, binary, site.note.file_offset)
            assert ipmap.lookup(site.ip) == site.spec_id.to_bytes(4, "little")
            target.fire(21)
            assert (o.bss["regs_x"], o.bss["regs_y"], o.bss["regs_hits"]) == (21, -63, 1)
            link.close()
            assert ipmap.lookup(site.ip) is None
        finally:
            o.close()


def test_real_binary_python_gc_start(fresh: Any) -> None:
    """Debian's /usr/bin/python3: python:gc__start (arg "-4@112(%rsp)", the generation) is
    guarded by a semaphore, so it only fires because the kernel raised it for us."""
    python = "/usr/bin/python3"
    if not os.path.exists(python) or ("python", "gc__start") not in usdt.usdt_file(
            os.path.realpath(python)).probes():
        pytest.skip(f"{python} has no python:gc__start USDT probe")
    # (attach once start-up, which collects, is over and gc is off; the interpreter collects
    # again while exiting: read the hits before it does)
    script = ("import gc, sys; gc.disable(); print('ready', flush=True); sys.stdin.readline(); gc.collect(1); "
              "print('done', flush=True); sys.stdin.readline()")
    proc = subprocess.Popen([python, "-c", script], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert proc.stdin is not None and proc.stdout is not None
    try:
        assert proc.stdout.readline().strip() == "ready"
        with fresh.programs["tk_any"].attach_usdt(python, "python", "gc__start", pid=proc.pid, cookie=6) as link:
            assert link.sites[0].note.semaphore_offset
            proc.stdin.write("go\n")
            proc.stdin.flush()
            assert proc.stdout.readline().strip() == "done"
            h = hit(fresh, 6)
        proc.communicate("exit\n", timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert (h["count"], h["args"], h["pid"]) == (1, [1], proc.pid)


def test_cli_usdt_list(binary: str, target: Target) -> None:
    """`tracekit usdt list PATH` and `--pid PID`: one `PATH PROVIDER:NAME` line per probe."""
    from tests.unit.test_usdt_notes import readelf_notes

    want = list(dict.fromkeys(f"{binary} {n['provider']}:{n['name']}" for n in readelf_notes(binary)))

    def run(*args: str) -> list[str]:
        r = subprocess.run(["python3", "-m", "tracekit.cli", "usdt", "list", *args], capture_output=True, text=True,
                           check=True, cwd=Path(__file__).resolve().parents[2])
        return r.stdout.splitlines()

    assert run(binary) == want
    assert [line for line in run("--pid", str(target.pid)) if line.startswith(binary)] == want
    verbose = run("-v", binary)
    assert f"{binary} tk:sema [sema {usdt.usdt_file(binary).find('tk', 'sema')[0].semaphore_address:#x}]" in verbose
    assert "  2 location(s), 1 argument(s)" in verbose


def build_throw_target() -> str:
    """tests/objects/usdt_throw.cc compiled with g++ (cached by content)."""
    import hashlib
    import shutil

    from tests.support import BUILD_DIR, OBJECTS_SRC

    src = OBJECTS_SRC / "usdt_throw.cc"
    out = BUILD_DIR / f"usdt_throw-{hashlib.sha256(src.read_bytes()).hexdigest()[:16]}"
    if not out.exists():
        cxx = shutil.which("g++") or shutil.which("c++")
        if cxx is None:
            pytest.skip("no C++ compiler for tests/objects/usdt_throw.cc")
        out.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run([cxx, "-O1", "-o", f"{out}.tmp", str(src)], check=True)
        os.rename(f"{out}.tmp", out)
    return str(out)


def test_real_shared_library_libstdcxx_throw(fresh: Any) -> None:
    """A shared library of this machine: libstdc++.so.6's own libstdcxx:throw probe fires
    once per throw, its second argument the runtime address of the typeinfo thrown."""
    from tracekit.hooks.uprobe import resolve_path

    lib = os.path.realpath(resolve_path("libstdc++.so.6"))
    if ("libstdcxx", "throw") not in usdt.usdt_file(lib).probes():
        pytest.skip(f"{lib} has no libstdcxx:throw USDT probe")
    exe = build_throw_target()

    def typeinfo(path: str) -> int | None:
        """Link-time address of typeinfo for std::runtime_error defined in ``path``."""
        nm = subprocess.run(["nm", "-D", "--defined-only", path], capture_output=True, text=True, check=True).stdout
        return next((int(line.split()[0], 16) for line in nm.splitlines()
                     if line.split()[-1].startswith("_ZTISt13runtime_error@")), None)

    # a PIE referencing the typeinfo gets a copy of it (copy relocation) that then wins
    owner = exe if typeinfo(exe) is not None else lib
    tinfo = typeinfo(owner)
    proc = subprocess.Popen([exe], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert proc.stdin is not None and proc.stdout is not None
    try:
        proc.stdin.write("0\n")  # let the dynamic loader map libstdc++ before we look for it
        proc.stdin.flush()
        assert proc.stdout.readline().strip() == "0"
        assert usdt.usdt_file(lib).is_shared
        with fresh.programs["tk_any"].attach_usdt("libstdc++.so.6", "libstdcxx", "throw", pid=proc.pid,
                                                  cookie=7) as link:
            proc.stdin.write("5\n")
            proc.stdin.flush()
            assert proc.stdout.readline().strip() == "5"
            site = link.sites[0]
        with open(f"/proc/{proc.pid}/maps") as f:
            maps = f.read().splitlines()

        def base_of(path: str) -> int:
            real = os.path.realpath(path)
            return next(int(line.split("-")[0], 16) for line in maps
                        if line.rstrip().endswith(real) and line.split()[2] == "00000000")
    finally:
        proc.stdin.close()
        proc.wait(timeout=10)
        proc.stdout.close()
    h = hit(fresh, 7)
    assert h["count"] == 5 and h["arg_cnt"] == 2 and h["pid"] == proc.pid
    assert tinfo is not None and h["args"][1] == base_of(owner) + tinfo
    assert h["ip"] == base_of(lib) + site.note.address  # %rip at the probe, in the library's mapping
