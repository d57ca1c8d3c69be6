"""CO-RE against the running kernel: tests/objects/core_live.bpf.c is relocated for this
kernel's BTF, loaded and attached; the values it stores must equal what the kernel's
BTF says and what the kernel reports about this process."""

from __future__ import annotations

import os
from pathlib import Path

import tracekit
from tests.support import require_live
from tracekit.btf.types import Kind
from tracekit.kernel import btf as kernel


def _member_offset(btf, struct: str, member: str) -> tuple[int, int]:
    t = btf.type(btf.find(struct, Kind.STRUCT)[0])
    for m in t.members:
        if m.name == member:
            return m.bit_offset // 8, btf.size_of(m.type)
    raise AssertionError(f"{struct}.{member} not in kernel BTF")


def test_core_values_on_the_running_kernel(bpf_objects) -> None:
    require_live()
    vm = kernel.vmlinux()
    with tracekit.open(bpf_objects("core_live.bpf.c")) as obj:
        obj.rodata.target_tgid = os.getpid()
        obj.load()
        obj.attach()
        os.getppid()  # any syscall from this process
        bss = obj.bss
        assert bss.hits >= 1
        pid_off, _ = _member_offset(vm, "task_struct", "pid")
        _, comm_size = _member_offset(vm, "task_struct", "comm")
        task_id = vm.find("task_struct", Kind.STRUCT)[0]
        assert bss.pid_offset == pid_off
        assert bss.comm_size == comm_size == 16
        assert bss.task_size == vm.size_of(task_id)
        assert bss.task_btf_id == task_id
        assert bss.pid_signed == 1
        assert bss.flavor_exists == 0
        assert bss.type_missing == 0
        ringbuf = next(v.value for v in vm.type(vm.find("bpf_map_type", Kind.ENUM)[0]).values
                       if v.name == "BPF_MAP_TYPE_RINGBUF")
        assert bss.enum_value == ringbuf == 27
        assert bss.enum_missing == 0
        assert bss.matches == 1
        # values read through relocated offsets (task_struct___mine is a flavor)
        assert bss.core_tgid == os.getpid()
        assert bss.core_pid == os.getpid()  # the main thread: pid == tgid
        assert bss.core_comm == Path("/proc/self/comm").read_text().strip()[:15]
