"""Kernel-side CO-RE (tracekit.kernel.kcore): the verifier applies the object's CO-RE
records, and the result must be exactly what the user-space engine produces: the same
program tags (bpf_prog_info.tag hashes the final instructions), the same values computed
on the running kernel, no vmlinux BTF read in the process, and user-space fallbacks that
still explain failures."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import tracekit
from tests.support import ROOT, require_live
from tracekit.errors import VerifierError
from tracekit.kernel import kcore
from tracekit.kernel.syscalls import bpf

pytestmark = pytest.mark.live


def _tags(src: object, monkeypatch: pytest.MonkeyPatch, mode: str) -> tuple[dict[str, str], str | None, set[str]]:
    monkeypatch.setenv("TRACEKIT_CORE", mode)
    with tracekit.open(src) as obj:  # type: ignore[arg-type]
        if "target_tgid" in dir(obj.rodata):
            obj.rodata.target_tgid = 1
        obj.load()
        return ({n: bpf.prog_info(p.fd).tag for n, p in obj.programs.items()},
                obj.core_path_reason, set(obj._kcore_progs))


@pytest.mark.parametrize("name", ["opensnoop", "execsnoop", "core_live.bpf.c"])
def test_kernel_and_user_space_core_give_the_same_tags(name: str, bpf_objects, monkeypatch) -> None:
    require_live()
    if not kcore.kernel_supported():
        pytest.skip("kernel older than 5.17: no kernel-side CO-RE")
    src = bpf_objects(name) if name.endswith(".c") else name
    user, reason_u, kprogs_u = _tags(src, monkeypatch, "user")
    kern, reason_k, kprogs_k = _tags(src, monkeypatch, "auto")
    assert reason_u == "TRACEKIT_CORE=user" and not kprogs_u
    assert reason_k is None, reason_k
    assert kprogs_k, "no program went through kernel-side CO-RE"
    assert kern == user


def test_kernel_core_values_on_the_running_kernel(bpf_objects, monkeypatch) -> None:
    """core_live.bpf.c relocated by the verifier: the stored values are the kernel's (the
    local flavor's offsets differ from task_struct's, so an unapplied record would show)."""
    require_live()
    if not kcore.kernel_supported():
        pytest.skip("kernel older than 5.17")
    monkeypatch.setenv("TRACEKIT_CORE", "kernel")
    from tracekit.btf.types import Kind
    from tracekit.kernel import btf as kernel

    with tracekit.open(bpf_objects("core_live.bpf.c")) as obj:
        obj.rodata.target_tgid = os.getpid()
        obj.load()
        assert obj.core_path_reason is None and obj._kcore_progs == {"core_live"}
        obj.attach()
        os.getppid()
        bss = obj.bss
        assert bss.hits >= 1
        vm = kernel.vmlinux()
        task = vm.type(vm.find("task_struct", Kind.STRUCT)[0])
        pid_off = next(m.bit_offset // 8 for m in task.members if m.name == "pid")
        assert pid_off != 0  # task_struct___mine has pid at 0: relocation is visible
        assert bss.pid_offset == pid_off
        assert bss.task_btf_id == vm.find("task_struct", Kind.STRUCT)[0]
        assert bss.enum_value == 27 and bss.flavor_exists == 0 and bss.type_missing == 0
        assert bss.core_pid == bss.core_tgid == os.getpid()


def test_cold_kernel_path_reads_no_vmlinux_btf() -> None:
    """A fresh process loading a bundled tracepoint probe never parses vmlinux BTF."""
    require_live()
    if not kcore.kernel_supported():
        pytest.skip("kernel older than 5.17")
    code = ("import tracekit, tracekit.kernel.btf as kb\n"
            "o = tracekit.open('opensnoop'); o.load()\n"
            "print(o.core_path_reason, len(o._kcore_progs), kb._vmlinux is None)\n"
            "o.close()\n")
    env = {k: v for k, v in os.environ.items() if k != "TRACEKIT_CORE"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                         cwd=str(ROOT), check=True).stdout.split()
    assert out == ["None", "6", "True"]


def test_user_space_fallbacks(bpf_objects, monkeypatch, tmp_path: Path) -> None:
    """btf= targets relocate in user space; a kernel-relocated program the verifier refuses
    is retried in user space, whose error explains the poisoned relocation."""
    require_live()
    if not kcore.kernel_supported():
        pytest.skip("kernel older than 5.17")
    monkeypatch.delenv("TRACEKIT_CORE", raising=False)
    vmlinux = tmp_path / "vmlinux.btf"
    vmlinux.write_bytes(Path("/sys/kernel/btf/vmlinux").read_bytes())
    with tracekit.open("opensnoop", btf=vmlinux) as obj:
        obj.load()
        assert obj.core_path_reason is not None and "btf=" in obj.core_path_reason
    with tracekit.open(bpf_objects("kcore_poison.bpf.c")) as obj:
        with pytest.raises(VerifierError) as ei:
            obj.load()
        assert "tracekit_kcore_missing_field" in str(ei.value)
