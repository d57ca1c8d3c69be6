"""In-kernel BTF name look-ups (tracekit.kernel.btf_lookup): the ids the kernel finds are
the user-space engine's, no fd is left behind, and objects with attach-by-BTF-id programs
or kfunc/ksym externs load through kernel-side CO-RE with the same program tags as
``TRACEKIT_CORE=user`` -- without reading vmlinux BTF in the process."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import tracekit
from tests.support import ROOT, build_bpf_object, need, require_live
from tracekit.btf.types import Kind
from tracekit.errors import ExternError, NotSupportedError, TracekitError
from tracekit.kernel import btf_lookup, kcore
from tracekit.kernel.syscalls import bpf

pytestmark = pytest.mark.live


@pytest.fixture(autouse=True)
def _live() -> Iterator[None]:
    require_live()
    if not btf_lookup.available():
        pytest.skip(f"no in-kernel BTF look-up here: {btf_lookup.why_not()}")
    yield


def _task_kfuncs() -> bool:
    """btf_lookup.bpf.c's kfuncs (bpf_task_from_pid & co.) are Linux 6.2+: not on 6.1."""
    return btf_lookup.find_one("bpf_task_from_pid", int(Kind.FUNC)) is not None


def _need_task_kfuncs() -> None:
    need("the task kfuncs bpf_task_from_pid/bpf_rcu_read_lock (Linux 6.2+)", _task_kfuncs(),
         "btf_lookup.bpf.c calls them")


def _fds() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


def _var(obj: tracekit.Object, name: str) -> int:
    for sec in (".bss", ".data"):
        gd = obj._globals.get(sec)
        if gd is not None and name in gd:
            return int(gd[name])
    raise KeyError(name)


# names of each kind the look-up serves, plus misses (attach ids: TYPEDEF btf_trace_*, FUNC;
# externs: FUNC kfuncs, VAR ksyms; and kinds nobody asks for but the helper takes)
NAMES = [
    ("btf_trace_sched_switch", Kind.TYPEDEF),
    ("btf_trace_sched_wakeup", Kind.TYPEDEF),
    ("do_unlinkat", Kind.FUNC),
    ("bpf_lsm_file_open", Kind.FUNC),
    ("bpf_iter_task", Kind.FUNC),
    ("bpf_task_from_pid", Kind.FUNC),
    ("runqueues", Kind.VAR),
    ("bpf_prog_active", Kind.VAR),
    ("task_struct", Kind.STRUCT),
    ("bpf_prog_type", Kind.ENUM),
    ("int", Kind.INT),
    ("tracekit_no_such_func", Kind.FUNC),
    ("btf_trace_tracekit_no_such_tp", Kind.TYPEDEF),
    ("task_struct", Kind.FUNC),  # the name exists, not with that kind
]


def test_lookups_equal_the_user_space_engine() -> None:
    from tracekit.kernel import btf as kernel

    btf_lookup.why_not()  # the program's own fd stays open for the process: count after it
    before = _fds()
    got = btf_lookup.find(NAMES)
    assert _fds() == before
    vm = kernel.vmlinux()
    for name, kind in NAMES:
        ids = vm.find(name, kind)
        f = got[(name, kind)]
        if not ids:
            assert f is None, (name, kind, f)
        else:
            assert f is not None and not f.in_module and f.btf_id == ids[0], (name, kind, f, ids)
    assert got[("tracekit_no_such_func", Kind.FUNC)] is None


def test_module_btf_name_gives_an_owned_fd() -> None:
    from tracekit.kernel import btf as kernel

    mods = kernel.modules()
    if not mods:
        pytest.skip("no module BTF loaded here (/sys/kernel/btf holds only vmlinux)")
    vm = kernel.vmlinux()
    base = len(vm)
    pick = None
    for mod, b in mods.items():
        for tid in range(base, len(b)):
            if b.kind_of(tid) == Kind.FUNC and not vm.find(b.name_of(tid), Kind.FUNC):
                pick = (mod, b.name_of(tid), b.find(b.name_of(tid), Kind.FUNC))
                break
        if pick:
            break
    if pick is None:
        pytest.skip("no module FUNC absent from vmlinux")
    mod, name, ids = pick
    before = _fds()
    f = btf_lookup.find([(name, Kind.FUNC)])[(name, Kind.FUNC)]
    assert f is not None and f.module_fd is not None
    try:
        info = bpf.btf_info(f.module_fd.fd)
        assert info.kernel_btf and info.name == mod
        assert f.btf_id in ids
    finally:
        f.module_fd.close()
    assert _fds() == before


def test_bad_names_are_refused_before_the_kernel() -> None:
    with pytest.raises(btf_lookup.TooLong):
        btf_lookup.find([("x" * btf_lookup.NAME_MAX, Kind.FUNC)])
    with pytest.raises(btf_lookup.TooLong):
        btf_lookup.find([("", Kind.FUNC)])
    assert btf_lookup.find([]) == {}


def test_program_is_loaded_once_and_reopened_after_close() -> None:
    btf_lookup.find([("task_struct", Kind.STRUCT)])
    loads, runs = btf_lookup.stats()
    btf_lookup.find([("task_struct", Kind.STRUCT), ("file", Kind.STRUCT)])
    assert btf_lookup.stats() == (loads, runs + 2 // btf_lookup.SLOTS)
    btf_lookup.close()
    assert btf_lookup.find([("task_struct", Kind.STRUCT)])[("task_struct", Kind.STRUCT)] is not None
    assert btf_lookup.stats()[0] == loads + 1


# --- objects through the kernel path -----------------------------------------------------


def _tags(src: object, mode: str, monkeypatch: pytest.MonkeyPatch, *, pid: int = 0) -> tuple[dict[str, str], str | None, set[str]]:
    monkeypatch.setenv("TRACEKIT_CORE", mode)
    with tracekit.open(src) as obj:  # type: ignore[arg-type]
        if pid and "target_pid" in dir(obj.bss):
            obj.bss.target_pid = pid
        obj.load()
        return ({n: bpf.prog_info(p.fd).tag for n, p in obj.programs.items() if p.loaded},
                obj.core_path_reason, set(obj._lookup_progs))


def _no_vmlinux(monkeypatch: pytest.MonkeyPatch) -> None:
    """Reading vmlinux BTF in this process from now on raises."""
    from tracekit.kernel import btf as kernel

    def refuse() -> None:
        raise AssertionError("the kernel path read vmlinux BTF")

    monkeypatch.setattr(kernel, "_vmlinux", None)
    monkeypatch.setattr(kernel, "_modules", None)
    monkeypatch.setattr(kernel, "_load_vmlinux", refuse)


@pytest.mark.parametrize("name", ["runqlat", "biolatency", "offcputime", "btf_lookup.bpf.c"])
def test_tp_btf_and_kfunc_objects_same_tags_as_user_space(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    if not kcore.kernel_supported():
        pytest.skip("kernel older than 5.17: no kernel-side CO-RE")
    if name == "btf_lookup.bpf.c":
        _need_task_kfuncs()
    src = build_bpf_object(name) if name.endswith(".c") else name
    user, reason_u, lp_u = _tags(src, "user", monkeypatch)
    assert reason_u == "TRACEKIT_CORE=user" and not lp_u
    btf_lookup.why_not()
    before = _fds()
    _no_vmlinux(monkeypatch)
    kern, reason_k, lp_k = _tags(src, "auto", monkeypatch, pid=os.getpid())
    assert reason_k is None, reason_k
    assert any(n.endswith("_btf") or n in ("on_switch", "use_kfuncs") for n in lp_k), lp_k
    assert kern == user
    assert _fds() == before  # no module fd, no program, no map left


def test_kfuncs_run_through_the_kernel_path(monkeypatch: pytest.MonkeyPatch) -> None:
    _need_task_kfuncs()
    if not kcore.kernel_supported():
        pytest.skip("kernel older than 5.17")
    monkeypatch.delenv("TRACEKIT_CORE", raising=False)
    _no_vmlinux(monkeypatch)
    with tracekit.open(build_bpf_object("btf_lookup.bpf.c")) as obj:
        obj.bss.target_pid = os.getpid()
        obj.load()
        assert obj.core_path_reason is None and obj._lookup_progs == {"use_kfuncs", "on_switch"}
        assert obj.programs["use_kfuncs"].test_run() == 0
        assert _var(obj, "seen_pid") == os.getpid()  # bpf_task_from_pid's id was right
        assert _var(obj, "missing_exists") == 0 and _var(obj, "missing_var") == 0  # weak, absent: 0
        assert _var(obj, "missing_ret") == -1  # the guarded call was dropped
        obj.attach()
        for _ in range(100):
            time.sleep(0.001)  # sleeping switches this task out
            if _var(obj, "switches"):
                break
        assert _var(obj, "switches") > 0  # the tp_btf attach id was sched_switch's


def test_errors_are_the_user_space_engines(monkeypatch: pytest.MonkeyPatch) -> None:
    """A missing strong kfunc: the same message on both paths, no vmlinux read for it on
    the kernel path.  A prototype the verifier refuses: retried in user space, whose
    prototype check explains it.  Nothing is left open either way."""
    _need_task_kfuncs()
    if not kcore.kernel_supported():
        pytest.skip("kernel older than 5.17")
    msgs = {}
    for mode in ("user", "auto"):
        monkeypatch.setenv("TRACEKIT_CORE", mode)
        before = _fds()
        obj = tracekit.open(build_bpf_object("btf_lookup.bpf.c", defines=["STRONG_MISSING"]))
        with pytest.raises(ExternError) as ei:
            obj.load()
        obj.close()
        msgs[mode] = str(ei.value)
        assert _fds() == before
    assert msgs["auto"] == msgs["user"] and "tracekit_no_such_kfunc_strong" in msgs["auto"]

    monkeypatch.setenv("TRACEKIT_CORE", "auto")
    before = _fds()
    obj = tracekit.open(build_bpf_object("btf_lookup.bpf.c", defines=["TOO_FEW_ARGS"]))
    with pytest.raises(ExternError) as ei:
        obj.load()
    obj.close()
    assert "kfunc 'bpf_task_acquire': local prototype" in str(ei.value) and "incompatible" in str(ei.value)
    assert _fds() == before


def test_missing_attach_target_same_error(monkeypatch: pytest.MonkeyPatch) -> None:
    msgs = {}
    for mode in ("user", "auto"):
        monkeypatch.setenv("TRACEKIT_CORE", mode)
        with tracekit.open(build_bpf_object("btf_lookup.bpf.c")) as obj:
            obj.programs["use_kfuncs"].autoload = False
            obj.programs["on_switch"].set_attach_target("tracekit_no_such_tp", check=False)
            with pytest.raises(NotSupportedError) as ei:
                obj.load()
            msgs[mode] = str(ei.value)
    assert msgs["auto"] == msgs["user"] and "btf_trace_tracekit_no_such_tp" in msgs["auto"]


def test_flavored_externs_stay_in_user_space(monkeypatch: pytest.MonkeyPatch) -> None:
    """___flavor kfuncs are chosen by prototype, which needs the kernel's BTF here."""
    monkeypatch.delenv("TRACEKIT_CORE", raising=False)
    with tracekit.open(build_bpf_object("extern_kfunc.bpf.c")) as obj:
        obj.bss.target_pid = os.getpid()
        try:
            obj.load()
        except TracekitError:
            pass  # an old kernel without the strong kfuncs: the reason is set before
        assert obj.core_path_reason is not None and "___flavor" in obj.core_path_reason
        assert not obj._lookup_progs


def test_cold_process_reads_no_vmlinux_btf(tmp_path: Path) -> None:
    """A fresh process loading runqlat (tp_btf) and the kfunc object: no vmlinux BTF read,
    one look-up program load, no fd left after close."""
    if not kcore.kernel_supported():
        pytest.skip("kernel older than 5.17")
    # the kfunc object where the kernel has its kfuncs (6.2+); runqlat everywhere
    srcs = ["runqlat"] + ([str(build_bpf_object("btf_lookup.bpf.c"))] if _task_kfuncs() else [])
    code = ("import os, tracekit, tracekit.kernel.btf as kb\n"
            "from tracekit.kernel import btf_lookup\n"
            "fds = set(os.listdir('/proc/self/fd'))\n"
            f"for src in {srcs!r}:\n"
            "    o = tracekit.open(src); o.load()\n"
            "    print(o.core_path_reason, len(o._lookup_progs), end=' ')\n"
            "    o.close()\n"
            "btf_lookup.close()\n"
            "print(kb._vmlinux is None, btf_lookup.stats()[0], set(os.listdir('/proc/self/fd')) == fds)\n")
    env = {k: v for k, v in os.environ.items() if k != "TRACEKIT_CORE"}
    env["XDG_CACHE_HOME"] = str(tmp_path)  # no on-disk BTF cache either
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                         cwd=str(ROOT), check=True).stdout.split()
    assert out == ["None", "3"] + (["None", "2"] if len(srcs) > 1 else []) + ["True", "1", "True"]


def test_probe_fallback_choice_reads_no_vmlinux_btf(tmp_path: Path) -> None:
    """A declared probe choosing between tp_btf and raw_tp (tracekit-runqlat's start) asks
    the kernel whether the hook exists (hooks/fallback): a fresh process starting it reads
    no vmlinux BTF, and takes the same hooks as with the user-space engine."""
    if not kcore.kernel_supported():
        pytest.skip("kernel older than 5.17")
    code = ("import os, tracekit.kernel.btf as kb\n"
            "from tracekit.probes.runqlat import RunQLat\n"
            "p = RunQLat(); p.start()\n"
            "print(sorted(v[1] for v in p.chosen.values()), kb._vmlinux is None)\n"
            "p.close()\n")
    outs = []
    for mode in ("auto", "user"):
        env = {k: v for k, v in os.environ.items() if k != "TRACEKIT_CORE"}
        env["TRACEKIT_CORE"] = mode
        env["XDG_CACHE_HOME"] = str(tmp_path / mode)  # no on-disk BTF cache either
        outs.append(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                                   cwd=str(ROOT), check=True).stdout.strip())
    hooks_auto, read_auto = outs[0].rsplit(" ", 1)
    hooks_user, read_user = outs[1].rsplit(" ", 1)
    assert hooks_auto == hooks_user
    assert (read_auto, read_user) == ("True", "False")
