"""Extern resolution (tracekit.obj.externs) against hand-built kernel BTF: no kernel involved.

The objects are the clang-built tests/objects/extern_*.bpf.c; the "kernel" is a small BTF
built here (vmlinux, and a module split on it), so each rule of libbpf's resolution is
checked with exact ids, instruction bytes and .kconfig bytes.
"""

from __future__ import annotations

import gzip
import struct

import pytest

from tests.support import build_bpf_object
from tracekit.btf.reader import BTF
from tracekit.btf.types import INT_BOOL, INT_SIGNED, Kind, Param, Type
from tracekit.btf.writer import BTFBuilder
from tracekit.errors import ExternError
from tracekit.kernel.kconfig import parse_config, read_config, read_kallsyms
from tracekit.obj import elf
from tracekit.obj.externs import (
    KernelFacts,
    kernel_version_code,
    patch_program,
    resolve_externs,
)
from tracekit.obj.insn import (
    BPF_PSEUDO_BTF_ID,
    BPF_PSEUDO_KFUNC_CALL,
    CALL,
    POISON_EXTERN,
    ldimm64_value,
)
from tracekit.obj.plan import link_program


def _kernel(with_acquire: bool = True) -> tuple[BTF, dict[str, int]]:
    """A tiny 'vmlinux': the kfuncs and per-CPU variables the test objects use."""
    b = BTFBuilder()
    ids: dict[str, int] = {}
    task = b.add_type(Type(Kind.STRUCT, "task_struct", size=16))
    ptask = b.add_type(Type(Kind.PTR, type=task))
    s32 = b.add_type(Type(Kind.INT, "int", size=4, encoding=INT_SIGNED, bits=32))
    void_proto = b.add_type(Type(Kind.FUNC_PROTO, type=0))
    if with_acquire:
        p = b.add_type(Type(Kind.FUNC_PROTO, type=ptask, params=[Param("p", ptask)]))
        ids["bpf_task_acquire"] = b.add_type(Type(Kind.FUNC, "bpf_task_acquire", type=p, linkage=1))
    p = b.add_type(Type(Kind.FUNC_PROTO, type=ptask, params=[Param("pid", s32)]))
    ids["bpf_task_from_pid"] = b.add_type(Type(Kind.FUNC, "bpf_task_from_pid", type=p, linkage=1))
    p = b.add_type(Type(Kind.FUNC_PROTO, type=0, params=[Param("p", ptask)]))
    ids["bpf_task_release"] = b.add_type(Type(Kind.FUNC, "bpf_task_release", type=p, linkage=1))
    ids["bpf_rcu_read_lock"] = b.add_type(Type(Kind.FUNC, "bpf_rcu_read_lock", type=void_proto, linkage=1))
    ids["bpf_rcu_read_unlock"] = b.add_type(Type(Kind.FUNC, "bpf_rcu_read_unlock", type=void_proto, linkage=1))
    rq = b.add_type(Type(Kind.STRUCT, "rq", size=64))
    ids["runqueues"] = b.add_type(Type(Kind.VAR, "runqueues", type=rq, linkage=1))
    ids["bpf_prog_active"] = b.add_type(Type(Kind.VAR, "bpf_prog_active", type=s32, linkage=1))
    return b.to_btf(name="vmlinux"), ids


def _module(base: BTF) -> tuple[BTF, int]:
    """A module BTF (split on ``base``) that provides bpf_task_acquire."""
    b = BTFBuilder(base=base)
    ptask = base.find_one("task_struct", Kind.STRUCT)
    ptr = b.add_type(Type(Kind.PTR, type=ptask))
    p = b.add_type(Type(Kind.FUNC_PROTO, type=ptr, params=[Param("p", ptr)]))
    fid = b.add_type(Type(Kind.FUNC, "bpf_task_acquire", type=p, linkage=1))
    return b.to_btf(name="/sys/kernel/btf/tk_mod"), fid


def _spec(src: str, defines: tuple[str, ...] = ()):
    return elf.load_spec(build_bpf_object(src, defines=list(defines)))


def _insns_of(spec, res, prog: str):
    plan = link_program(spec, spec.programs[prog])
    pe = patch_program(plan, res)
    return plan, pe


# --- kfuncs ----------------------------------------------------------------------------


def test_kfunc_flavors_resolve_by_prototype() -> None:
    spec = _spec("extern_kfunc.bpf.c")
    vmlinux, ids = _kernel()
    res = resolve_externs(spec, KernelFacts(targets=[vmlinux]))
    good, bad, missing = res["bpf_task_acquire___good"], res["bpf_task_acquire___bad"], res["tracekit_no_such_kfunc"]
    assert (good.resolved, good.btf_id, good.target) == (True, ids["bpf_task_acquire"], 0)
    assert not bad.resolved and "incompatible" in bad.note and "u64" in bad.note
    assert not missing.resolved and "no kernel function" in missing.note
    for n in ("bpf_task_from_pid", "bpf_task_release", "bpf_rcu_read_lock", "bpf_rcu_read_unlock"):
        assert res[n].resolved and res[n].btf_id == ids[n]

    plan, pe = _insns_of(spec, res, "use_kfuncs")
    assert pe.fd_array_targets == [] and pe.fd_array({}) is None
    seen_calls, seen_loads = {}, {}
    for ref in plan.extern_refs:
        ins = plan.insns[ref.insn]
        if ref.kind.name == "EXTERN_CALL":
            seen_calls.setdefault(ref.name, []).append((ins.code, ins.src, ins.off, ins.imm))
        else:
            seen_loads.setdefault(ref.name, []).append((ins.src, ldimm64_value(plan.insns, ref.insn)))
    assert seen_calls["bpf_task_acquire___good"] == [(CALL, BPF_PSEUDO_KFUNC_CALL, 0, ids["bpf_task_acquire"])]
    # the incompatible flavor's call is poisoned: a call to an invalid helper
    assert seen_calls["bpf_task_acquire___bad"] == [(CALL, 0, 0, POISON_EXTERN)]
    assert seen_calls["tracekit_no_such_kfunc"] == [(CALL, 0, 0, POISON_EXTERN)]
    assert set(pe.poisoned.values()) == {"bpf_task_acquire___bad", "tracekit_no_such_kfunc"}
    # bpf_ksym_exists(): BTF id of the resolved FUNC, plain 0 for unresolved ones
    assert set(seen_loads["bpf_task_acquire___good"]) == {(BPF_PSEUDO_BTF_ID, ids["bpf_task_acquire"])}
    assert set(seen_loads["bpf_task_acquire___bad"]) == {(0, 0)}
    assert set(seen_loads["tracekit_no_such_kfunc"]) == {(0, 0)}
    hint = pe.explain_poison(f"12: (85) call unknown#{POISON_EXTERN}\ninvalid func unknown#{POISON_EXTERN}")
    assert hint and "bpf_ksym_exists" in hint


def test_kfunc_from_module_uses_fd_array_slot() -> None:
    spec = _spec("extern_kfunc.bpf.c")
    vmlinux, _ = _kernel(with_acquire=False)
    mod, fid = _module(vmlinux)
    res = resolve_externs(spec, KernelFacts(targets=[vmlinux, mod]))
    good = res["bpf_task_acquire___good"]
    assert (good.resolved, good.btf_id, good.target) == (True, fid, 1)
    plan, pe = _insns_of(spec, res, "use_kfuncs")
    calls = [plan.insns[r.insn] for r in plan.extern_refs if r.name == "bpf_task_acquire___good" and r.kind.name == "EXTERN_CALL"]
    assert [(i.src, i.off, i.imm) for i in calls] == [(BPF_PSEUDO_KFUNC_CALL, 1, fid)]
    assert pe.fd_array_targets == [1] and pe.fd_array({1: 77}) == [0, 77]
    # bpf_ksym_exists() of a module kfunc: the module BTF fd goes in the second half
    loads = [r.insn for r in plan.extern_refs if r.name == "bpf_task_acquire___good" and r.kind.name == "EXTERN_VAR"]
    assert sorted(pe.btf_fd_insns) == sorted((i, 1) for i in loads)
    pe.fill_btf_fds(plan.insns, {1: 77})
    assert all(plan.insns[i + 1].imm == 77 and plan.insns[i].imm == fid for i in loads)


def test_strong_missing_kfunc_is_an_error() -> None:
    spec = _spec("extern_kfunc.bpf.c", ("STRONG_MISSING",))
    vmlinux, _ = _kernel()
    with pytest.raises(ExternError) as ei:
        resolve_externs(spec, KernelFacts(targets=[vmlinux]))
    msg = str(ei.value)
    assert "tracekit_no_such_kfunc_strong" in msg and "int (*)(int)" in msg and "bpf_ksym_exists" in msg
    assert "bpf_task_acquire___bad" not in msg  # weak: not an error


def test_strong_kfunc_with_wrong_prototype_names_both() -> None:
    spec = _spec("extern_kfunc.bpf.c", ("STRONG_BAD_PROTO",))
    vmlinux, ids = _kernel()
    with pytest.raises(ExternError) as ei:
        resolve_externs(spec, KernelFacts(targets=[vmlinux]))
    msg = str(ei.value)
    assert "kfunc 'bpf_task_acquire'" in msg
    assert "struct task_struct * (*)(struct task_struct *, int)" in msg  # ours
    assert f"vmlinux [{ids['bpf_task_acquire']}] bpf_task_acquire: struct task_struct * (*)(struct task_struct *)" in msg


# --- ksyms -----------------------------------------------------------------------------


def test_ksyms_typed_untyped_and_weak() -> None:
    spec = _spec("extern_ksym.bpf.c", ("TYPED",))
    vmlinux, ids = _kernel()
    facts = KernelFacts(targets=[vmlinux], kallsyms={"bpf_prog_put": 0xFFFFFFFF814E61B0})
    res = resolve_externs(spec, facts)
    assert (res["runqueues"].btf_id, res["bpf_prog_active"].btf_id) == (ids["runqueues"], ids["bpf_prog_active"])
    assert res["bpf_prog_put"].addr == 0xFFFFFFFF814E61B0
    assert not res["tracekit_no_such_var"].resolved and not res["tracekit_no_such_sym"].resolved
    plan, pe = _insns_of(spec, res, "use_ksyms")
    got = {r.name: (plan.insns[r.insn].src, ldimm64_value(plan.insns, r.insn)) for r in plan.extern_refs}
    assert got == {
        "runqueues": (BPF_PSEUDO_BTF_ID, ids["runqueues"]),  # second half: 0 = vmlinux
        "bpf_prog_active": (BPF_PSEUDO_BTF_ID, ids["bpf_prog_active"]),
        "bpf_prog_put": (0, 0xFFFFFFFF814E61B0),
        "tracekit_no_such_var": (0, 0),
        "tracekit_no_such_sym": (0, 0),
    }
    assert pe.btf_fd_insns == [] and pe.fd_array_targets == []


def test_ksym_errors() -> None:
    spec = _spec("extern_ksym.bpf.c", ("TYPED",))
    vmlinux, _ = _kernel()
    with pytest.raises(ExternError, match="could not be read"):
        resolve_externs(spec, KernelFacts(targets=[vmlinux], kallsyms=None))
    with pytest.raises(ExternError, match="no such symbol in /proc/kallsyms"):
        resolve_externs(spec, KernelFacts(targets=[vmlinux], kallsyms={}))
    with pytest.raises(ExternError, match="kptr_restrict"):
        resolve_externs(spec, KernelFacts(targets=[vmlinux], kallsyms={"bpf_prog_put": 0}))
    # a kernel whose bpf_prog_active is a struct: the declaration (int) is wrong
    b = BTFBuilder()
    s = b.add_type(Type(Kind.STRUCT, "x", size=4))
    b.add_type(Type(Kind.VAR, "bpf_prog_active", type=s, linkage=1))
    rq = b.add_type(Type(Kind.STRUCT, "rq", size=4))
    b.add_type(Type(Kind.VAR, "runqueues", type=rq, linkage=1))
    with pytest.raises(ExternError, match=r"bpf_prog_active.*declared const int.*struct x"):
        resolve_externs(spec, KernelFacts(targets=[b.to_btf()], kallsyms={"bpf_prog_put": 1}))
    # strong typed ksym absent from kernel BTF
    with pytest.raises(ExternError, match="no kernel variable 'runqueues'"):
        resolve_externs(spec, KernelFacts(targets=[BTFBuilder().to_btf()], kallsyms={"bpf_prog_put": 1}))


# --- kconfig ---------------------------------------------------------------------------

CONFIG = {
    "CONFIG_BPF_SYSCALL": "y",
    "CONFIG_BPF_JIT": "y",
    "CONFIG_HZ": "250",
    "CONFIG_LOCALVERSION": '"-tk"',
    "CONFIG_BPF_EVENTS": "m",
}


def _kfacts(**kw):
    base = dict(targets=[], kconfig=dict(CONFIG), kernel_version=kernel_version_code("6.1.0-28-amd64"),
                has_bpf_cookie=True, has_syscall_wrapper=False, kconfig_source="test config")
    base.update(kw)
    return KernelFacts(**base)


def test_kconfig_bytes_exact() -> None:
    spec = _spec("extern_kconfig.bpf.c")
    res = resolve_externs(spec, _kfacts())
    e = spec.externs
    data = res.kconfig_data
    assert len(data) == spec.maps[res.kconfig_map].value_size
    at = lambda n, size: data[e[n].offset : e[n].offset + size]  # noqa: E731
    assert struct.unpack("<I", at("LINUX_KERNEL_VERSION", 4))[0] == (6 << 16) | (1 << 8)
    assert at("LINUX_HAS_BPF_COOKIE", 1) == b"\x01" and at("LINUX_HAS_SYSCALL_WRAPPER", 1) == b"\x00"
    assert struct.unpack("<I", at("CONFIG_BPF_SYSCALL", 4))[0] == 1  # TRI_YES
    assert at("CONFIG_BPF_JIT", 1) == b"\x01"
    assert struct.unpack("<i", at("CONFIG_HZ", 4))[0] == 250
    assert at("CONFIG_BPF_EVENTS", 1) == b"m"  # a char extern gets the letter
    assert at("CONFIG_LOCALVERSION", 32) == b"-tk" + bytes(29)
    assert at("CONFIG_TRACEKIT_NOT_A_CONFIG", 8) == bytes(8)  # weak, unset: zero
    assert not res["CONFIG_TRACEKIT_NOT_A_CONFIG"].resolved
    # the program's loads point into the .kconfig map at each extern's offset
    plan, _ = _insns_of(spec, res, "read_kconfig")
    refs = {(m.insn, m.value_offset) for m in plan.map_refs if m.map_name == res.kconfig_map}
    assert refs == {(r.insn, e[r.name].offset) for r in plan.extern_refs}


def test_kconfig_user_mapping_wins_and_types() -> None:
    spec = _spec("extern_kconfig.bpf.c")
    res = resolve_externs(spec, _kfacts(kconfig=None, user_kconfig={
        "CONFIG_BPF_SYSCALL": "m", "CONFIG_HZ": 1000, "CONFIG_BPF_JIT": False,
        "CONFIG_LOCALVERSION": "x" * 40, "CONFIG_TRACEKIT_NOT_A_CONFIG": "0x1122334455667788",
        "LINUX_HAS_BPF_COOKIE": 0,
    }))
    e, data = spec.externs, res.kconfig_data
    assert struct.unpack_from("<I", data, e["CONFIG_BPF_SYSCALL"].offset)[0] == 2  # TRI_MODULE
    assert struct.unpack_from("<i", data, e["CONFIG_HZ"].offset)[0] == 1000
    assert data[e["CONFIG_BPF_JIT"].offset] == 0
    o = e["CONFIG_LOCALVERSION"].offset
    assert data[o : o + 32] == b"x" * 31 + b"\0"  # truncated, NUL-terminated
    assert struct.unpack_from("<Q", data, e["CONFIG_TRACEKIT_NOT_A_CONFIG"].offset)[0] == 0x1122334455667788
    assert data[e["LINUX_HAS_BPF_COOKIE"].offset] == 0  # user value over the probe


@pytest.mark.parametrize(
    ("defines", "facts", "pattern"),
    [
        (("STRONG_MISSING",), {}, "CONFIG_TRACEKIT_STRONG_MISSING' is not set in test config"),
        (("STRONG_MISSING",), {"kconfig": None}, r"no kernel config found.*load\(kconfig="),
        ((), {"kconfig": {**CONFIG, "CONFIG_BPF_JIT": "m"}}, "CONFIG_BPF_JIT' is bool.*module"),
        ((), {"kconfig": {**CONFIG, "CONFIG_HZ": "y"}}, "CONFIG_HZ'.*needs bool, char or enum"),
        ((), {"kconfig": {**CONFIG, "CONFIG_HZ": "0x100000000"}}, "does not fit in 4 bytes"),
        ((), {"kconfig": {**CONFIG, "CONFIG_HZ": '"250"'}}, "needs a char array"),
        ((), {"kconfig": {k: v for k, v in CONFIG.items() if k != "CONFIG_BPF_SYSCALL"}}, "CONFIG_BPF_SYSCALL"),
        ((), {"kernel_version": 0}, "LINUX_KERNEL_VERSION"),
    ],
)
def test_kconfig_errors(defines, facts, pattern) -> None:
    spec = _spec("extern_kconfig.bpf.c", defines)
    with pytest.raises(ExternError, match=pattern):
        resolve_externs(spec, _kfacts(**facts))


# --- kernel facts readers --------------------------------------------------------------


def test_kernel_version_code() -> None:
    assert kernel_version_code("6.1.0-28-amd64") == 0x060100
    assert kernel_version_code("6.18.44-fc-v782") == (6 << 16) | (18 << 8) | 44
    assert kernel_version_code("4.19.300") == (4 << 16) | (19 << 8) | 255  # patch capped
    assert kernel_version_code("6.12") == (6 << 16) | (12 << 8)


def test_config_and_kallsyms_files(tmp_path) -> None:
    text = 'CONFIG_A=y\n# CONFIG_B is not set\nCONFIG_C="x y"\n\nCONFIG_D=0x10\n'
    assert parse_config(text) == {"CONFIG_A": "y", "CONFIG_C": '"x y"', "CONFIG_D": "0x10"}
    gz = tmp_path / "config.gz"
    gz.write_bytes(gzip.compress(text.encode()))
    assert read_config(str(gz)) == (parse_config(text), str(gz))
    ks = tmp_path / "kallsyms"
    ks.write_text(
        "ffffffff81000000 T _stext\n"
        "ffffffff81000010 t dup\n"
        "ffffffff81000020 t dup\n"
        "ffffffff81000030 T foo\t[mod]\n"
        "ffffffff81000040 T foobar\n"
    )
    assert read_kallsyms(["_stext", "dup", "foo", "nope"], str(ks)) == {
        "_stext": 0xFFFFFFFF81000000, "dup": -1, "foo": 0xFFFFFFFF81000030,
    }
    assert read_kallsyms(["x"], str(tmp_path / "missing")) is None


def test_untyped_ambiguous_kallsyms() -> None:
    spec = _spec("extern_ksym.bpf.c")
    with pytest.raises(ExternError, match="several addresses"):
        resolve_externs(spec, KernelFacts(targets=[_kernel()[0]], kallsyms={"bpf_prog_put": -1}))


def test_unused_bool_classification() -> None:
    # bool externs are INT with the BOOL encoding in clang's BTF
    spec = _spec("extern_kconfig.bpf.c")
    t = spec.btf.resolve(spec.externs["CONFIG_BPF_JIT"].type_id)
    assert t.kind == Kind.INT and t.encoding & INT_BOOL
