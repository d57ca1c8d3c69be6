"""Module BTF, live: CO-RE candidates from module BTF, kfuncs of a module (fd_array) and a
typed ``__ksym`` defined in a module (BPF_PSEUDO_BTF_ID with the module's BTF fd).

These run for real inside the Debian 6.1/6.12 qemu guests (tests/vm/test_in_guest_attach.py
runs this file there; overlay, 9p, 9pnet and netfs are loaded at boot, nf_conntrack and
x_tables are modprobe'd here).  On a kernel known to have module BTF a missing piece is a
failure; elsewhere (this 6.18 host builds everything in and has no module BTF) a test
skips and says so -- except the conntrack kfunc test, which also runs where the kfuncs
are in vmlinux and then checks that no module BTF was involved.

    python -m pytest -q tests/vm/test_in_guest_attach.py     # on the host: both guests
"""

from __future__ import annotations

import os
import random
import shutil
import struct
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

import tracekit
from tests.support import (
    KNOWN_FEATURES,
    SERIES,
    build_bpf_object,
    need,
    require_live,
)
from tracekit.btf.reader import BTF
from tracekit.btf.types import Kind
from tracekit.kernel import btf as kernel
from tracekit.kernel.syscalls import bpf as _bpf
from tracekit.obj import core
from tracekit.obj.insn import BPF_PSEUDO_BTF_ID, BPF_PSEUDO_KFUNC_CALL, decode

pytestmark = pytest.mark.live

# shared/notes/machines.md: Debian's 6.1 and 6.12 have module BTF; this 6.18 host has none.
SYSFS_BTF = Path("/sys/kernel/btf")
IPS_CONFIRMED = 1 << 3
ENOENT = 2



def has_module_btf() -> bool:
    try:
        return any(n != "vmlinux" for n in os.listdir(SYSFS_BTF))
    except OSError:
        return False


def need_module_btf() -> None:
    need("module BTF", has_module_btf(), f"no module BTF on this kernel ({SYSFS_BTF} holds only vmlinux)")


def modprobe(module: str) -> bool:
    """Load ``module`` if it is not loaded; True when its BTF is in sysfs afterwards."""
    if not (SYSFS_BTF / module).exists():
        exe = shutil.which("modprobe") or next(
            (p for p in ("/usr/sbin/modprobe", "/sbin/modprobe") if os.path.exists(p)), None)
        if exe is not None:
            subprocess.run([exe, module], capture_output=True, timeout=120)
    return (SYSFS_BTF / module).exists()


def sysfs_btf(module: str) -> BTF:
    """The module's BTF read straight from sysfs: the test's own reference, split on vmlinux."""
    return BTF.from_file(str(SYSFS_BTF / module), base=kernel.vmlinux())


def own(btf: BTF, name: str, kind: Kind) -> list[int]:
    """Ids of ``name`` among a split BTF's own types (not its base's)."""
    return [t for t in btf.find(name, kind) if t >= btf.start_id]


def member(btf: BTF, tid: int, name: str) -> tuple[int, int]:
    for m in btf.type(tid).members:
        if m.name == name:
            return m.bit_offset // 8, btf.size_of(m.type)
    raise AssertionError(f"{btf.describe(tid)} has no member {name!r}")


def var(obj: Any, name: str) -> Any:
    """A global of the object, wherever the compiler put it (.bss when zero-initialized)."""
    for sec in (".bss", ".data"):
        try:
            gd = obj.section(sec)
        except AttributeError:
            continue
        if name in gd:
            return getattr(gd, name)
    raise AssertionError(f"object has no global {name!r}")


def refcnt(module: str) -> int:
    return int(Path(f"/sys/module/{module}/refcnt").read_text())


def wait_refcnt(module: str, want: int) -> int:
    """The kernel frees a program (and drops its module references) after an RCU grace period."""
    got = refcnt(module)
    for _ in range(200):
        if got == want:
            break
        time.sleep(0.02)
        got = refcnt(module)
    return got


def kallsyms(name: str, module: str) -> list[int]:
    out = []
    with open("/proc/kallsyms") as f:
        for line in f:
            parts = line.split()
            if len(parts) >= 4 and parts[2] == name and parts[3] == f"[{module}]":
                out.append(int(parts[0], 16))
    return out


# --- CO-RE candidates from module BTF ----------------------------------------------------


def test_core_relocates_against_module_types() -> None:
    require_live()
    need_module_btf()
    for mod in ("overlay", "9pnet", "9p"):
        need("module BTF", modprobe(mod), f"no BTF for module {mod}")
    # vmlinux has enum nf_nat_manip_type only as an empty forward declaration, nf_conntrack
    # the full enum: libbpf searches modules only when vmlinux has no candidate at all, so
    # the module's enum must be ignored (and NF_NAT_MANIP_DST then does not exist).
    need("module BTF", modprobe("nf_conntrack"), "cannot load nf_conntrack")

    vm = kernel.vmlinux()
    ovl, p9net, p9, ct = (sysfs_btf(m) for m in ("overlay", "9pnet", "9p", "nf_conntrack"))
    assert not vm.find("ovl_fs", Kind.STRUCT) and not vm.find("p9_client", Kind.STRUCT), \
        "the guests' vmlinux is expected to lack the overlay/9p types"
    (ovl_id,) = own(ovl, "ovl_fs", Kind.STRUCT)
    assert own(p9net, "p9_client", Kind.STRUCT) and own(p9, "p9_client", Kind.STRUCT)
    (manip_vm,) = vm.find("nf_nat_manip_type", Kind.ENUM)
    assert not vm.type(manip_vm).values, "vmlinux is expected to have the enum as a forward only"
    (manip_ct,) = own(ct, "nf_nat_manip_type", Kind.ENUM)
    assert "NF_NAT_MANIP_DST" in [e.name for e in ct.type(manip_ct).values]

    with tracekit.open(build_bpf_object("module_core.bpf.c")) as obj:
        obj.load()
        prog = obj.programs["module_core"]
        assert prog.test_run() == 0

        def v(name: str) -> int:
            return var(obj, name)

        # struct ovl_fs: only in overlay's BTF
        assert v("ovl_exists") == 1
        assert v("ovl_size") == ovl.size_of(ovl_id)
        assert v("ovl_id") == ovl_id  # the module BTF's own id
        assert v("ovl_layers_off") == member(ovl, ovl_id, "layers")[0]
        assert v("ovl_cred_off") == member(ovl, ovl_id, "creator_cred")[0]
        assert v("ovl_errseq_off") == member(ovl, ovl_id, "errseq")[0]
        has_ndl = any(m.name == "numdatalayer" for m in ovl.type(ovl_id).members)
        assert has_ndl == (SERIES != "6.1")  # came in 6.5
        assert v("ovl_numdatalayer_exists") == int(has_ndl)
        assert v("ovl_bogus_exists") == 0
        # struct p9_client: a copy in 9pnet, 9p (and 9pnet_virtio); identical layouts, so they agree
        pid = own(p9net, "p9_client", Kind.STRUCT)[0]
        assert v("p9_msize_off") == member(p9net, pid, "msize")[0]
        assert (v("p9_name_off"), v("p9_name_size")) == member(p9net, pid, "name")
        assert v("p9_size") == p9net.size_of(pid)
        # vmlinux types still come from vmlinux
        (task,) = vm.find("task_struct", Kind.STRUCT)
        assert v("task_id") == task
        assert v("task_pid_off") == member(vm, task, "pid")[0]
        assert v("manip_id") == manip_vm
        assert v("manip_dst_exists") == 0  # the module's full enum was not consulted

    # Where the candidates came from, as tracekit's relocator (same rules as the load)
    # sees them against the running kernel.
    local = obj.spec.btf
    r = core.CoreRelocator(local, [vm, *kernel.modules().values()])

    def sources(name: str, kind: Kind) -> list[tuple[str, int]]:
        (lid,) = local.find(name, kind)
        return sorted((c.source, c.type_id) for c in r.candidates(lid))

    assert sources("ovl_fs___tk", Kind.STRUCT) == [("overlay", ovl_id)]
    # every module carrying its own struct p9_client (9pnet, 9p, 9pnet_virtio, ...) is a
    # candidate, not just the first one found
    p9_copies = sorted((m, t) for m in os.listdir(SYSFS_BTF) if m != "vmlinux"
                       for t in own(sysfs_btf(m), "p9_client", Kind.STRUCT))
    assert {"9p", "9pnet"} <= {m for m, _ in p9_copies}
    assert sources("p9_client___tk", Kind.STRUCT) == p9_copies
    assert sources("nf_nat_manip_type", Kind.ENUM) == [("vmlinux", manip_vm)]
    assert sources("task_struct", Kind.STRUCT) == [("vmlinux", task)]


# --- kfuncs of a module ---------------------------------------------------------------------


def tcp_packet(saddr: bytes, daddr: bytes, sport: int, dport: int) -> bytes:
    """Ethernet + IPv4 + TCP SYN, as BPF_PROG_TEST_RUN hands it to an XDP program."""
    eth = b"\x02\x00\x00\x00\x00\x02" + b"\x02\x00\x00\x00\x00\x01" + struct.pack("!H", 0x0800)
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 40, 1, 0, 64, 6, 0, saddr, daddr)
    tcp = struct.pack("!HHIIBBHHH", sport, dport, 1, 0, 5 << 4, 0x02, 1024, 0, 0)
    return eth + ip + tcp


def test_kfuncs_of_nf_conntrack(monkeypatch: pytest.MonkeyPatch) -> None:
    require_live()
    kernel.modules()  # a listing that may predate the modprobe below
    modprobe("nf_conntrack")
    vm = kernel.vmlinux()
    in_vmlinux = bool(vm.find("bpf_xdp_ct_lookup", Kind.FUNC))
    in_module = (SYSFS_BTF / "nf_conntrack").exists()
    need("module BTF", in_module or (in_vmlinux and SERIES not in KNOWN_FEATURES["module BTF"]),
         "nf_conntrack's kfuncs are neither in vmlinux nor in a loadable nf_conntrack module")
    if in_module:
        # kernel.modules() sees a module loaded after an earlier listing
        assert "nf_conntrack" in kernel.modules(), sorted(kernel.modules())
        ct = sysfs_btf("nf_conntrack")
        kfunc_ids = {n: own(ct, n, Kind.FUNC)[0] for n in
                     ("bpf_xdp_ct_lookup", "bpf_xdp_ct_alloc", "bpf_ct_insert_entry", "bpf_ct_release")}
        refs_before = refcnt("nf_conntrack")
    else:
        kfunc_ids = {n: vm.find(n, Kind.FUNC)[0] for n in
                     ("bpf_xdp_ct_lookup", "bpf_xdp_ct_alloc", "bpf_ct_insert_entry", "bpf_ct_release")}

    # See what the loader hands the kernel (the real call goes through unchanged): the
    # fd_array, and which kernel BTF object each of its fds is, while the fds are open.
    seen: list[tuple[list[int] | None, list[str]]] = []
    real_load = _bpf.load_program

    def spy(**kw: Any) -> Any:
        fds = kw.get("fd_array")
        names = [_bpf.btf_info(fd).name if fd else "" for fd in (fds or [])]
        seen.append((list(fds) if fds else None, names))
        return real_load(**kw)

    monkeypatch.setattr(_bpf, "load_program", spy)
    sport = random.randint(20000, 60000)  # a flow no earlier run inserted (entries live 10 s+)
    with tracekit.open(build_bpf_object("module_kfunc.bpf.c")) as obj:
        obj.load()
        prog = obj.programs["ct_flow"]
        # the patched calls: kfunc BTF ids of the target, off = fd_array slot (0 = vmlinux)
        calls = [(i.imm, i.off) for i in prog.plan.insns if i.is_call and i.src == BPF_PSEUDO_KFUNC_CALL]
        assert {imm for imm, _ in calls} == set(kfunc_ids.values())
        ((fd_array, btf_names),) = seen
        if in_module:
            assert {off for _, off in calls} == {1}
            assert fd_array is not None and len(fd_array) == 2 and fd_array[0] == 0
            assert btf_names[1] == "nf_conntrack"
            # the loaded program holds nf_conntrack (through its kfunc BTF) until it is freed
            assert refcnt("nf_conntrack") == refs_before + 1
        else:
            assert {off for _, off in calls} == {0} and fd_array is None

        pkt = tcp_packet(bytes([10, 0, 0, 1]), bytes([10, 0, 0, 2]), sport, 80)
        ret = prog.test_run(data=pkt)
        assert var(obj, "parsed") == 1
        assert var(obj, "first_found") == 0, "an unknown flow was found"
        assert var(obj, "first_error") == -ENOENT
        assert var(obj, "alloc_error") == 0
        assert var(obj, "inserted") == 1
        assert var(obj, "inserted_status") & IPS_CONFIRMED
        assert (var(obj, "again_found"), var(obj, "again_dir"), var(obj, "again_error")) == (1, 0, 0)
        assert (var(obj, "reply_found"), var(obj, "reply_dir")) == (1, 1)  # IP_CT_DIR_REPLY
        assert ret == 2  # XDP_PASS: every step succeeded
        # the same flow again: now the first lookup finds it
        assert prog.test_run(data=pkt) == 1  # XDP_DROP
        assert var(obj, "first_found") == 1
    if in_module:
        assert wait_refcnt("nf_conntrack", refs_before) == refs_before


# --- a typed ksym of a module ----------------------------------------------------------------


def test_typed_ksym_of_a_module(monkeypatch: pytest.MonkeyPatch) -> None:
    require_live()
    need_module_btf()
    kernel.modules()  # list first: x_tables is normally loaded only below
    need("module BTF", modprobe("x_tables"), "cannot load x_tables")
    assert "x_tables" in kernel.modules()
    xt = sysfs_btf("x_tables")
    (var_id,) = own(xt, "xt_recseq", Kind.VAR)
    (addr,) = kallsyms("xt_recseq", "x_tables")
    assert addr, "kallsyms hides addresses (kptr_restrict)"
    refs_before = refcnt("x_tables")

    # What the loader hands the kernel (the real call goes through unchanged): the
    # BPF_PSEUDO_BTF_ID ldimm64s and which kernel BTF object the fd in their second half is.
    seen: list[tuple[int, str]] = []
    real_load = _bpf.load_program

    def spy(**kw: Any) -> Any:
        insns = decode(kw["insns"])
        for n, ins in enumerate(insns):
            if ins.is_ldimm64 and ins.src == BPF_PSEUDO_BTF_ID:
                fd = insns[n + 1].imm
                seen.append((ins.imm, _bpf.btf_info(fd).name if fd else "vmlinux"))
        return real_load(**kw)

    monkeypatch.setattr(_bpf, "load_program", spy)
    with tracekit.open(build_bpf_object("module_ksym.bpf.c")) as obj:
        obj.load()
        prog = obj.programs["read_recseq"]
        assert seen and set(seen) == {(var_id, "x_tables")}, seen
        assert refcnt("x_tables") == refs_before + 1  # the program holds x_tables' BTF
        assert prog.test_run() == 0
        # the kernel resolved the module's per-CPU variable: its address is the one
        # /proc/kallsyms lists for xt_recseq [x_tables]
        assert var(obj, "recseq_addr") == addr
        assert var(obj, "cpu0_ok") == 1
        assert var(obj, "recseq_seq") % 2 == 0  # no x_tables writer runs on this CPU now
    assert wait_refcnt("x_tables", refs_before) == refs_before
