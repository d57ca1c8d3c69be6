"""Differential check: tracekit's CO-RE relocation vs libbpf's, instruction by instruction.

tests/tools/libbpf_core_dump.c (linked with the system's libbpf, 1.1.2 on Debian) runs
the real bpf_object__load() with ``btf_custom_path`` set to the target BTF while it
answers the bpf() system calls itself, and prints the instructions libbpf hands to
BPF_PROG_LOAD.  Those must equal tracekit's relocated instructions everywhere except the
ldimm64s of map/global-data references, which libbpf fills with (fake) map fds and which
are not CO-RE's business.  No kernel and no privileges are needed.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.support import BUILD_DIR, build_bpf_object
from tests.tools.core_objects import CorePair, build_pair
from tracekit.btf.reader import BTF
from tracekit.errors import CORERelocationError
from tracekit.obj.core import CoreRelocator
from tracekit.obj.elf import load_spec
from tracekit.obj.insn import (
    BPF_PSEUDO_MAP_FD,
    BPF_PSEUDO_MAP_IDX,
    BPF_PSEUDO_MAP_IDX_VALUE,
    BPF_PSEUDO_MAP_VALUE,
    LD_IMM64,
    Insn,
)

TOOL_SRC = Path(__file__).resolve().parent.parent / "tools" / "libbpf_core_dump.c"
_MAP_SRCS = {BPF_PSEUDO_MAP_FD, BPF_PSEUDO_MAP_VALUE, BPF_PSEUDO_MAP_IDX, BPF_PSEUDO_MAP_IDX_VALUE}


@pytest.fixture(scope="module")
def tool() -> Path:
    """Build the libbpf helper into build/ (cached by source hash)."""
    cc = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if cc is None or not Path("/usr/include/bpf/libbpf.h").exists():
        pytest.fail("the differential test needs a C compiler and libbpf-dev (apt-get install gcc libbpf-dev)")
    digest = hashlib.sha256(TOOL_SRC.read_bytes()).hexdigest()[:16]
    out = BUILD_DIR / "tools" / f"libbpf_core_dump-{digest}"
    if not out.exists():
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_suffix(".tmp")
        subprocess.run([cc, "-O2", "-g", "-Wall", "-o", str(tmp), str(TOOL_SRC), "-lbpf"], check=True)
        tmp.rename(out)
    return out


def libbpf_relocate(tool: Path, obj: Path, target: Path, progs: list[str] = ()) -> dict[str, list[Insn]] | str:
    """Programs' final instructions per libbpf, or libbpf's error line."""
    r = subprocess.run([str(tool), str(obj), str(target), *progs], capture_output=True, text=True)
    out: dict[str, list[Insn]] = {}
    cur: list[Insn] = []
    for line in r.stdout.splitlines():
        if line.startswith("error "):
            return line
        if line.startswith("prog "):
            _, name, _n = line.split()
            cur = out.setdefault(name, [])
            continue
        _i, code, dst, src, off, imm = map(int, line.split())
        cur.append(Insn(code, dst, src, off, imm))
    if r.returncode:
        raise AssertionError(f"libbpf_core_dump failed ({r.returncode}): {r.stderr}")
    return out


def compare(name: str, ours: list[Insn], theirs: list[Insn]) -> int:
    """Assert equality; returns how many instructions were compared."""
    assert len(ours) == len(theirs), f"{name}: {len(ours)} insns vs libbpf's {len(theirs)}"
    i = compared = 0
    while i < len(ours):
        t = theirs[i]
        if t.code == LD_IMM64 and t.src in _MAP_SRCS:
            i += 2  # a map/global-data reference: filled by a later stage, not CO-RE
            continue
        assert ours[i] == t, f"{name}: insn #{i}: tracekit {ours[i]} != libbpf {t}"
        compared += 1
        i += 1
    return compared


#: programs where tracekit follows a libbpf fix newer than the libbpf this compares with
#: (Debian's 1.1.2): array fields of another length are resized by their element since
#: libbpf's 2025 "fix LDX/STX/ST CO-RE relocation size adjustment logic"; 1.1.2 poisons all
#: four loads of ``array_fields``, tracekit only the signed one
#: (tests/unit/test_core_conformance.py pins tracekit's values).  Checked below to differ
#: in exactly those loads, so the exclusion cannot hide anything else.
NEWER_THAN_LIBBPF_1_1 = {"array_fields"}


def test_array_fields_differ_from_libbpf_1_1_only_where_it_was_fixed(tool: Path) -> None:
    pair = build_pair("core_conformance.bpf.c")
    theirs = libbpf_relocate(tool, pair.local_path, pair.target_path, ["array_fields"])
    assert isinstance(theirs, dict), theirs
    ours = pair.relocate("array_fields")[0]
    relocated = {r.insn for r in pair.spec.programs["array_fields"].core_relos}
    lib = theirs["array_fields"]
    maps = {j for i, b in enumerate(lib) if b.code == LD_IMM64 and b.src in _MAP_SRCS for j in (i, i + 1)}
    differ = {i for i, (a, b) in enumerate(zip(ours, lib, strict=True)) if a != b and i not in maps}
    assert differ and differ <= relocated
    assert all(lib[i].code == 0x85 for i in differ)  # libbpf 1.1's poison call


def ours_all(pair: CorePair) -> dict[str, list[Insn]]:
    r = pair.relocator()
    return {name: pair.relocate(name, r)[0] for name in pair.spec.programs}


def test_conformance_object_matches_libbpf(tool: Path) -> None:
    pair = build_pair("core_conformance.bpf.c")
    theirs = libbpf_relocate(tool, pair.local_path, pair.target_path)
    assert isinstance(theirs, dict), theirs
    ours = ours_all(pair)
    assert set(theirs) == set(ours)
    relocated = {n: {r.insn for r in p.core_relos} for n, p in pair.spec.programs.items()}
    for name in ours:
        if name in NEWER_THAN_LIBBPF_1_1:
            continue
        compare(name, ours[name], theirs[name])
        # every CO-RE-patched instruction was among those compared (none is a map ldimm64)
        for i in relocated[name]:
            assert not (theirs[name][i].code == LD_IMM64 and theirs[name][i].src in _MAP_SRCS)


def test_each_conformance_program_alone_matches_libbpf(tool: Path) -> None:
    """Program by program (libbpf skips relocations of programs it does not load)."""
    pair = build_pair("core_conformance.bpf.c")
    for name in pair.spec.programs:
        if name in NEWER_THAN_LIBBPF_1_1:
            continue
        theirs = libbpf_relocate(tool, pair.local_path, pair.target_path, [name])
        assert isinstance(theirs, dict), theirs
        compare(name, pair.relocate(name)[0], theirs[name])


@pytest.mark.parametrize("prog", ["ambiguous", "bitfield_too_wide", "index_out_of_bounds"])
def test_negative_cases_fail_in_both(tool: Path, prog: str) -> None:
    pair = build_pair("core_negative.bpf.c")
    theirs = libbpf_relocate(tool, pair.local_path, pair.target_path, [prog])
    assert isinstance(theirs, str) and theirs.startswith("error "), theirs
    with pytest.raises(CORERelocationError):
        pair.relocate(prog)


def test_negative_poison_matches_libbpf(tool: Path) -> None:
    pair = build_pair("core_negative.bpf.c")
    theirs = libbpf_relocate(tool, pair.local_path, pair.target_path, ["incompatible"])
    assert isinstance(theirs, dict), theirs
    compare("incompatible", pair.relocate("incompatible")[0], theirs["incompatible"])


def test_live_object_against_kernel_btf_matches_libbpf(tool: Path) -> None:
    """A vmlinux.h-based object relocated against the running kernel's BTF file (no load)."""
    vmlinux = Path("/sys/kernel/btf/vmlinux")
    if not vmlinux.exists():
        pytest.skip("no /sys/kernel/btf/vmlinux to use as a target")
    obj = build_bpf_object("core_live.bpf.c")
    theirs = libbpf_relocate(tool, obj, vmlinux)
    assert isinstance(theirs, dict), theirs
    spec = load_spec(str(obj))
    assert spec.btf is not None
    r = CoreRelocator(spec.btf, [BTF.from_file(str(vmlinux))])
    for name, p in spec.programs.items():
        insns = [i.copy() for i in p.insns]
        r.relocate(insns, p.core_relos, prog_name=name)
        assert compare(name, insns, theirs[name]) > 50
