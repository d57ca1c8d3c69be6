"""Build a CO-RE conformance object twice (local and -DTARGET) and relocate it with tracekit."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from tests.support import build_bpf_object
from tracekit.btf.reader import BTF
from tracekit.obj.core import CoreFixup, CoreRelocator
from tracekit.obj.elf import load_spec
from tracekit.obj.insn import Insn
from tracekit.obj.spec import ObjectSpec


@dataclass
class CorePair:
    local_path: Path
    target_path: Path
    spec: ObjectSpec
    target: BTF

    def relocator(self) -> CoreRelocator:
        assert self.spec.btf is not None
        return CoreRelocator(self.spec.btf, [self.target])

    def relocate(self, prog: str, relocator: CoreRelocator | None = None) -> tuple[list[Insn], list[CoreFixup]]:
        """(patched copy of the program's insns, fixups); the spec is left untouched."""
        p = self.spec.programs[prog]
        insns = [i.copy() for i in p.insns]
        r = relocator or self.relocator()
        return insns, r.relocate(insns, p.core_relos, prog_name=prog)


def build_pair(source: str) -> CorePair:
    local = build_bpf_object(source, use_vmlinux_h=False)
    target = build_bpf_object(source, defines=["TARGET"], use_vmlinux_h=False)
    return CorePair(local, target, load_spec(str(local)), BTF.from_file(str(target)))
