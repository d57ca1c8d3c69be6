"""The load plan (pure): subprogram linking, CO-RE and map references vs libbpf, exactly.

For every program of the bundled probes and of test objects with static/global
subprograms and callbacks, the final instructions tracekit would hand to BPF_PROG_LOAD must
equal libbpf's (tests/tools/libbpf_core_dump.c runs libbpf's real load with faked bpf()
answers).  Map references are compared by kind and value offset (the fds are fake).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support import ROOT
from tests.unit.test_core_differential import libbpf_relocate, tool  # noqa: F401 - fixture
from tracekit.btf.reader import BTF
from tracekit.obj.elf import load_spec
from tracekit.obj.insn import (
    BPF_PSEUDO_CALL,
    BPF_PSEUDO_FUNC,
    BPF_PSEUDO_MAP_FD,
    BPF_PSEUDO_MAP_VALUE,
    LD_IMM64,
)
from tracekit.obj.plan import link_program, plan_program

VMLINUX = Path("/sys/kernel/btf/vmlinux")


@pytest.fixture(scope="module")
def vmlinux() -> BTF:
    if not VMLINUX.exists():
        pytest.skip("no /sys/kernel/btf/vmlinux to relocate against")
    return BTF.from_file(str(VMLINUX))


def objects(bpf_objects) -> list[Path]:
    return [
        ROOT / "tracekit" / "probes" / "execsnoop.bpf.o",
        ROOT / "tracekit" / "probes" / "opensnoop.bpf.o",
        bpf_objects("globals.bpf.c"),
        bpf_objects("plan_calls.bpf.c"),
    ]


def test_programs_equal_libbpf(tool, vmlinux, bpf_objects) -> None:  # noqa: F811
    checked = 0
    for path in objects(bpf_objects):
        spec = load_spec(path)
        # kfunc/ksym externs are resolved at load time (tests/*/test_externs.py): compare the rest
        plans = {n: plan_program(spec, p, [vmlinux]) for n, p in spec.programs.items()}
        plans = {n: p for n, p in plans.items() if not p.extern_refs}
        theirs = libbpf_relocate(tool, path, VMLINUX, list(plans))
        assert not isinstance(theirs, str), f"{path.name}: libbpf failed: {theirs}"
        for name, plan in plans.items():
            refs = {r.insn: r for r in plan.map_refs}
            ours, lib = plan.insns, theirs[name]
            assert len(ours) == len(lib), f"{path.name}:{name}: {len(ours)} insns vs libbpf's {len(lib)}"
            i = 0
            while i < len(ours):
                t = lib[i]
                if t.code == LD_IMM64 and t.src in (BPF_PSEUDO_MAP_FD, BPF_PSEUDO_MAP_VALUE):
                    ref = refs.get(i)
                    assert ref is not None, f"{path.name}:{name}: libbpf has a map reference at {i}, we don't"
                    if t.src == BPF_PSEUDO_MAP_VALUE:
                        assert ref.value_offset == lib[i + 1].imm, f"{path.name}:{name}: value offset at {i}"
                    else:
                        assert ref.value_offset is None
                    i += 2
                    continue
                assert ours[i] == t, f"{path.name}:{name}: insn #{i}: tracekit {ours[i]} != libbpf {t}"
                i += 1
            checked += 1
    assert checked >= 10


def test_subprograms_appended_once_with_sorted_func_info(bpf_objects) -> None:
    spec = load_spec(bpf_objects("plan_calls.bpf.c"))
    multi = 0
    for prog in spec.programs.values():
        plan = link_program(spec, prog)
        if plan.extern_refs:
            continue
        starts = sorted(plan.layout.values())
        assert starts[0] == 0
        assert len(set(starts)) == len(starts), "a subprogram was appended twice"
        # every function start has func_info, in order
        assert [f.insn for f in plan.func_info] == starts
        for i, ins in enumerate(plan.insns):
            if ins.is_call and ins.src == BPF_PSEUDO_CALL or ins.is_ldimm64 and ins.src == BPF_PSEUDO_FUNC:
                assert i + 1 + ins.imm in starts, f"{prog.name}: call at {i} lands mid-function"
        multi += len(starts) > 1
    assert multi >= 2, "the test object must exercise subprogram calls"
