"""Kernel externs on the running kernel: kfuncs, ksyms and kconfig values, run and checked.

Every program is a SEC("syscall") program run with BPF_PROG_TEST_RUN; its results land in
.data/.bss and are compared with what the kernel says (our pid, /proc/kallsyms, the
kernel config, probes).
"""

from __future__ import annotations

import os

import pytest

import tracekit
from tests.support import build_bpf_object, require_live
from tracekit.btf.types import Kind
from tracekit.errors import ExternError, MapError, SyscallError, VerifierError
from tracekit.kernel import features
from tracekit.kernel.kconfig import kernel_version, read_config


@pytest.fixture(autouse=True)
def _live() -> None:
    require_live()


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def _var(obj: tracekit.Object, name: str):
    for sec in (".bss", ".data"):
        gd = obj._globals.get(sec)
        if gd is not None and name in gd:
            return gd[name]
    raise KeyError(name)


# --- kfuncs ----------------------------------------------------------------------------

#: kfuncs extern_kfunc.bpf.c declares strong (6.2+); older kernels must refuse the object
STRONG_KFUNCS = ("bpf_task_from_pid", "bpf_task_release", "bpf_rcu_read_lock", "bpf_rcu_read_unlock")


def _kernel_lacks(*names: str) -> list[str]:
    from tracekit.kernel import btf as kernel

    vmlinux = kernel.vmlinux()
    return [n for n in names if not vmlinux.find(n, Kind.FUNC)]


def _expect_missing_strong(obj: tracekit.Object, missing: list[str]) -> None:
    """On an old kernel: one ExternError naming exactly the absent strong kfuncs."""
    with pytest.raises(ExternError) as ei:
        obj.load()
    named = {n for n in STRONG_KFUNCS if f"kfunc {n!r}" in str(ei.value)}
    assert named == set(missing), str(ei.value)
    assert "bpf_task_acquire___bad" not in str(ei.value)  # weak: never an error


def test_kfunc_flavors_and_weak_missing() -> None:
    missing = _kernel_lacks(*STRONG_KFUNCS)
    with tracekit.open(build_bpf_object("extern_kfunc.bpf.c")) as obj:
        if missing:
            _expect_missing_strong(obj, missing)
            return
        obj.bss.target_pid = os.getpid()
        obj.load()
        assert obj.programs["use_kfuncs"].test_run() == 0
        # ___good has bpf_task_acquire's prototype, ___bad an extra argument
        assert (_var(obj, "good_exists"), _var(obj, "bad_exists"), _var(obj, "missing_exists")) == (1, 0, 0)
        assert _var(obj, "used_flavor") == 1  # the program took the branch of the kernel's flavor
        assert _var(obj, "seen_pid") == os.getpid()  # read through the acquired task_struct
        assert _var(obj, "missing_ret") == -1  # the guarded call of the missing kfunc was dropped


def test_strong_missing_kfunc_fails_cleanly() -> None:
    before = _open_fds()
    obj = tracekit.open(build_bpf_object("extern_kfunc.bpf.c", defines=["STRONG_MISSING"]))
    with pytest.raises(ExternError) as ei:
        obj.load()
    msg = str(ei.value)
    assert "tracekit_no_such_kfunc_strong" in msg and "int (*)(int)" in msg
    obj.close()
    assert _open_fds() == before


def test_strong_kfunc_wrong_prototype() -> None:
    obj = tracekit.open(build_bpf_object("extern_kfunc.bpf.c", defines=["STRONG_BAD_PROTO"]))
    with pytest.raises(ExternError) as ei:
        obj.load()
    msg = str(ei.value)
    assert "kfunc 'bpf_task_acquire'" in msg and "struct task_struct * (*)(struct task_struct *, int)" in msg
    if not _kernel_lacks("bpf_task_acquire"):
        # the kernel's prototype is named next to ours
        assert "is incompatible with vmlinux [" in msg and "struct task_struct * (*)(struct task_struct *)" in msg
    obj.close()


def test_unguarded_call_of_missing_weak_kfunc_is_explained() -> None:
    missing = _kernel_lacks(*STRONG_KFUNCS)
    with tracekit.open(build_bpf_object("extern_kfunc.bpf.c", defines=["UNGUARDED"])) as obj:
        if missing:
            _expect_missing_strong(obj, missing)
            return
        with pytest.raises(VerifierError) as ei:
            obj.load()
    assert "tracekit_no_such_kfunc" in ei.value.hint and "bpf_ksym_exists" in ei.value.hint


# --- ksyms -----------------------------------------------------------------------------


def _kallsyms(name: str) -> int:
    with open("/proc/kallsyms") as fh:
        addrs = {int(line.split()[0], 16) for line in fh if line.split()[2:3] == [name]}
    assert len(addrs) == 1, addrs
    return addrs.pop()


def test_untyped_and_weak_ksyms() -> None:
    with tracekit.open(build_bpf_object("extern_ksym.bpf.c")) as obj:
        obj.load()
        assert obj.programs["use_ksyms"].test_run() == 0
        assert _var(obj, "prog_put_addr") == _kallsyms("bpf_prog_put") != 0
        assert _var(obj, "missing_typed") == 0 and _var(obj, "missing_untyped") == 0


def _kallsyms_all() -> bool:
    cfg = read_config()
    return cfg is not None and cfg[0].get("CONFIG_KALLSYMS_ALL") == "y"


def test_typed_percpu_ksyms() -> None:
    path = build_bpf_object("extern_ksym.bpf.c", defines=["TYPED"])
    obj = tracekit.open(path)
    try:
        if not _kallsyms_all():
            # The kernel turns our BTF id into an address through kallsyms, which lists data
            # symbols only with CONFIG_KALLSYMS_ALL (off on this VM's kernel): the load fails
            # in the kernel, after it accepted the BTF_ID reference we built.
            with pytest.raises(VerifierError) as ei:
                obj.load()
            assert "failed to find the address for kernel symbol 'runqueues'" in ei.value.log
            res = obj._extern_res  # resolution itself succeeded, against vmlinux BTF
            assert res["runqueues"].resolved and res["runqueues"].btf_id > 0
            return  # the qemu 6.1/6.12 kernels (KALLSYMS_ALL=y) run the program below
        obj.load()
        assert obj.programs["use_ksyms"].test_run() == 0
        assert _var(obj, "rq_cpu") == _var(obj, "this_cpu") >= 0  # runqueues' own cpu field
        assert _var(obj, "prog_active_ok") == 1
    finally:
        obj.close()


# --- kconfig ---------------------------------------------------------------------------


def _expect_from_config(cfg: dict[str, str]) -> dict[str, object]:
    tri = {"y": 1, "n": 0, "m": 2}
    return {
        "bpf_syscall": tri[cfg["CONFIG_BPF_SYSCALL"]],
        "bpf_jit": int(cfg.get("CONFIG_BPF_JIT") == "y"),
        "hz": int(cfg.get("CONFIG_HZ", "0")),
        "bpf_events": ord(cfg["CONFIG_BPF_EVENTS"]) if "CONFIG_BPF_EVENTS" in cfg else 0,
        "localversion": cfg.get("CONFIG_LOCALVERSION", '""').strip('"'),
    }


def _kconfig_results(obj: tracekit.Object) -> dict[str, object]:
    lv = _var(obj, "localversion")
    return {
        "bpf_syscall": _var(obj, "bpf_syscall"),
        "bpf_jit": _var(obj, "bpf_jit"),
        "hz": _var(obj, "hz"),
        "bpf_events": _var(obj, "bpf_events"),
        "localversion": lv.decode() if isinstance(lv, bytes) else lv,
    }


def test_kconfig_from_kernel_config() -> None:
    cfg = read_config()
    path = build_bpf_object("extern_kconfig.bpf.c")
    with tracekit.open(path) as obj:
        if cfg is None:
            # No /boot/config-* nor /proc/config.gz here: the values come from a mapping.
            mapping = {"CONFIG_BPF_SYSCALL": "y", "CONFIG_BPF_JIT": "y", "CONFIG_HZ": "100",
                       "CONFIG_BPF_EVENTS": "y", "CONFIG_LOCALVERSION": '"-x"'}
            obj.load(kconfig=mapping)
            expect = _expect_from_config(mapping)
        else:
            obj.load()
            expect = _expect_from_config(cfg[0])
        assert obj.programs["read_kconfig"].test_run() == 0
        assert _kconfig_results(obj) == expect
        assert _var(obj, "kernel_version") == kernel_version()
        assert _var(obj, "has_cookie") == int(features.bpf_cookie())
        assert _var(obj, "has_wrapper") == int(features.syscall_wrapper())
        assert _var(obj, "not_a_config") == 0  # weak and unset
        # .kconfig is frozen: user space cannot change what the program saw
        kmap = next(m for m in obj.maps.values() if m.spec.section == ".kconfig")
        with pytest.raises((MapError, SyscallError)):
            kmap.update(0, bytes(kmap.value_size))


def test_kconfig_user_mapping_overrides() -> None:
    with tracekit.open(build_bpf_object("extern_kconfig.bpf.c")) as obj:
        obj.load(kconfig={"CONFIG_HZ": 1234, "CONFIG_BPF_SYSCALL": "m", "CONFIG_LOCALVERSION": "-mine",
                          "LINUX_KERNEL_VERSION": 0x050A00})
        assert obj.programs["read_kconfig"].test_run() == 0
        assert (_var(obj, "hz"), _var(obj, "bpf_syscall")) == (1234, 2)
        assert _kconfig_results(obj)["localversion"] == "-mine"
        assert _var(obj, "kernel_version") == 0x050A00


def test_kconfig_strong_missing() -> None:
    obj = tracekit.open(build_bpf_object("extern_kconfig.bpf.c", defines=["STRONG_MISSING"]))
    with pytest.raises(ExternError, match="CONFIG_TRACEKIT_STRONG_MISSING"):
        obj.load(kconfig={} if read_config() else {"CONFIG_BPF_SYSCALL": "y"})
    obj.close()
