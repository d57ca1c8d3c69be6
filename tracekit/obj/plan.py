"""The load plan: an :class:`ObjectSpec` + target BTF -> final instructions per program.

Pure: no syscalls.  Given the object and the kernel's (or a user-given) BTF, this module

1. links each main program with every subprogram it reaches (transitively), appended at its
   end, fixing call offsets and shifting func_info / line_info / CO-RE records, as libbpf's
   ``bpf_object__relocate_calls`` does;
2. applies CO-RE relocations (:mod:`tracekit.obj.core`);
3. records, per instruction, which map or global-data section it refers to, so the loader
   only has to drop file descriptors in before ``BPF_PROG_LOAD``;
4. resolves the attach BTF id for programs that need one (tp_btf, fentry, ...).

Keeping this step pure makes the whole relocation pipeline testable on any machine
against any BTF, the same split cilium/ebpf (spec vs. load) and aya (aya-obj) make.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from tracekit import _log
from tracekit._record import Record
from tracekit.btf.ext import CoreRelo, FuncInfo, LineInfo
from tracekit.btf.reader import BTF
from tracekit.btf.types import Kind
from tracekit.errors import NotSupportedError, RelocationError
from tracekit.obj.insn import (
    BPF_PSEUDO_CALL,
    BPF_PSEUDO_FUNC,
    BPF_PSEUDO_MAP_FD,
    BPF_PSEUDO_MAP_VALUE,
    Insn,
)
from tracekit.obj.spec import FunctionSpec, ObjectSpec, ProgramSpec, RelocKind

log = _log.getLogger("tracekit.obj.plan")

#: functions one program may consist of, itself included (the kernel's BPF_MAX_SUBPROGS)
MAX_SUBPROGS = 256


# Plain classes rather than dataclasses: see tracekit._record (start-up cost, issue 13).


class MapRef(Record):
    """Instruction ``insn`` (an ldimm64) must carry map ``map_name``'s fd.

    ``value_offset`` is None for a plain map reference (BPF_PSEUDO_MAP_FD) and the byte
    offset inside the map's value for global data (BPF_PSEUDO_MAP_VALUE).
    """

    _fields = ("insn", "map_name", "value_offset")

    def __init__(self, insn: int, map_name: str, value_offset: int | None = None) -> None:
        self.insn = insn
        self.map_name = map_name
        self.value_offset = value_offset


class ExternRef(Record):
    """Instruction ``insn`` refers to kernel extern ``name`` (resolved at load time)."""

    _fields = ("insn", "name", "kind")

    def __init__(self, insn: int, name: str, kind: RelocKind) -> None:
        self.insn = insn
        self.name = name
        self.kind = kind


class ProgramPlan(Record):
    """Everything needed to load one program, except file descriptors."""

    _fields = ("spec", "insns", "func_info", "line_info", "core_relos", "map_refs", "extern_refs", "layout",
               "attach_btf_id", "attach_btf_target")

    def __init__(self, spec: ProgramSpec, insns: list[Insn], func_info: list[FuncInfo], line_info: list[LineInfo],
                 core_relos: list[CoreRelo], map_refs: list[MapRef] | None = None,
                 extern_refs: list[ExternRef] | None = None, layout: dict[tuple[str, int], int] | None = None,
                 attach_btf_id: int = 0, attach_btf_target: int = 0) -> None:
        self.spec = spec
        self.insns = insns
        self.func_info = func_info
        self.line_info = line_info
        self.core_relos = core_relos
        self.map_refs: list[MapRef] = [] if map_refs is None else map_refs
        self.extern_refs: list[ExternRef] = [] if extern_refs is None else extern_refs
        #: (section, offset) -> first instruction of that function inside ``insns``
        self.layout: dict[tuple[str, int], int] = {} if layout is None else layout
        self.attach_btf_id = attach_btf_id
        #: index of the target BTF holding attach_btf_id: 0 = vmlinux, >0 = a module's BTF
        self.attach_btf_target = attach_btf_target

    @property
    def name(self) -> str:
        return self.spec.name

    def fill_fds(self, map_fds: dict[str, int]) -> list[Insn]:
        """A copy of the instructions with map fds written into their ldimm64s."""
        insns = [i.copy() for i in self.insns]
        for ref in self.map_refs:
            try:
                fd = map_fds[ref.map_name]
            except KeyError:
                raise RelocationError(
                    f"program {self.name!r}: instruction {ref.insn} refers to map {ref.map_name!r}, "
                    "which was not created"
                ) from None
            ins = insns[ref.insn]
            ins.imm = fd
            if ref.value_offset is None:
                ins.src = BPF_PSEUDO_MAP_FD
                insns[ref.insn + 1].imm = 0
            else:
                ins.src = BPF_PSEUDO_MAP_VALUE
                insns[ref.insn + 1].imm = ref.value_offset
        return insns


def internal_map_for_section(spec: ObjectSpec, section: str) -> str:
    """Name of the internal map that holds data section ``section``."""
    for name, m in spec.maps.items():
        if m.section == section:
            return name
    raise RelocationError(f"object {spec.name!r} has no map for data section {section!r}")


def link_program(spec: ObjectSpec, prog: ProgramSpec) -> ProgramPlan:
    """Append the subprograms ``prog`` reaches and resolve call/callback offsets."""
    plan = ProgramPlan(
        spec=prog,
        insns=[i.copy() for i in prog.insns],
        func_info=[FuncInfo(r.insn, r.type_id) for r in prog.func_info],
        line_info=[LineInfo(r.insn, r.file_name_off, r.line_off, r.line_col) for r in prog.line_info],
        core_relos=[CoreRelo(r.insn, r.type_id, r.access, r.kind, r.access_off) for r in prog.core_relos],
    )
    plan.layout[prog.key] = 0
    # Depth-first in instruction order, appending each callee the first time it is
    # reached and relocating it right away: libbpf's bpf_object__reloc_code order, so
    # the final instructions are identical to libbpf's (the differential tests rely on it).
    _relocate_function(spec, plan, prog, 0)
    # The kernel wants func_info sorted by instruction and line_info likewise.
    plan.func_info.sort(key=lambda r: r.insn)
    plan.line_info.sort(key=lambda r: r.insn)
    return plan


def _relocate_function(spec: ObjectSpec, plan: ProgramPlan, fn: FunctionSpec, base: int) -> None:
    prog = plan.spec
    for rel in sorted(fn.relocations, key=lambda r: r.insn):
        at = base + rel.insn
        kind = rel.kind
        if kind in (RelocKind.CALL, RelocKind.SUBPROG_ADDR):
            callee = spec.function_at(rel.section, rel.offset)
            if callee is None:
                raise RelocationError(
                    f"program {prog.name!r}: instruction {at} calls {rel.symbol or '?'} at "
                    f"{rel.section}+{rel.offset}, which is not the start of a known function"
                )
            start = plan.layout.get(callee.key)
            if start is None:
                if len(plan.layout) >= MAX_SUBPROGS:
                    # the kernel refuses more (BPF_MAX_SUBPROGS); checked here, it also
                    # bounds this recursion for a hostile object's chain of callees
                    raise RelocationError(
                        f"program {prog.name!r} reaches more than {MAX_SUBPROGS} functions, the "
                        "kernel's limit (BPF_MAX_SUBPROGS): split it or inline some callees"
                    )
                start = _append(plan, callee)
                _relocate_function(spec, plan, callee, start)
            ins = plan.insns[at]
            if kind == RelocKind.CALL:
                if not ins.is_call:
                    raise RelocationError(f"program {prog.name!r}: instruction {at} is not a call")
                ins.src = BPF_PSEUDO_CALL
                ins.imm = start - (at + 1)
            else:
                if not ins.is_ldimm64:
                    raise RelocationError(f"program {prog.name!r}: instruction {at} is not an ldimm64")
                ins.src = BPF_PSEUDO_FUNC
                ins.imm = start - (at + 1)
                plan.insns[at + 1].imm = 0
        elif kind == RelocKind.MAP:
            _check_ldimm64(plan, at)
            if rel.symbol not in spec.maps:
                raise RelocationError(f"program {prog.name!r}: instruction {at} uses unknown map {rel.symbol!r}")
            plan.map_refs.append(MapRef(at, rel.symbol, None))
        elif kind == RelocKind.DATA:
            _check_ldimm64(plan, at)
            plan.map_refs.append(MapRef(at, internal_map_for_section(spec, rel.section), rel.offset))
        elif kind in (RelocKind.EXTERN_CALL, RelocKind.EXTERN_VAR):
            plan.extern_refs.append(ExternRef(at, rel.symbol, kind))
        else:  # pragma: no cover - RelocKind is closed
            raise RelocationError(f"program {prog.name!r}: unknown relocation kind {kind}")


def _check_ldimm64(plan: ProgramPlan, at: int) -> None:
    if not plan.insns[at].is_ldimm64:
        raise RelocationError(f"program {plan.name!r}: instruction {at} is not an ldimm64")


def _append(plan: ProgramPlan, fn: FunctionSpec) -> int:
    start = len(plan.insns)
    plan.layout[fn.key] = start
    plan.insns.extend(i.copy() for i in fn.insns)
    plan.func_info.extend(FuncInfo(r.insn + start, r.type_id) for r in fn.func_info)
    plan.line_info.extend(LineInfo(r.insn + start, r.file_name_off, r.line_off, r.line_col) for r in fn.line_info)
    plan.core_relos.extend(CoreRelo(r.insn + start, r.type_id, r.access, r.kind, r.access_off) for r in fn.core_relos)
    log.debug("appended %s (%d insns) at %d", fn.name, len(fn.insns), start)
    return start


def new_relocator(local: BTF, targets: Sequence[BTF]) -> Any:
    """One :class:`tracekit.obj.core.CoreRelocator` to share across the programs of one load.

    Candidates are looked up once per local type and narrowed across programs, as libbpf's
    per-object candidate cache does.  The caller owns it for the duration of one load: a
    module-level cache keyed by the local BTF would hold its own key (the relocator refers
    to the local BTF), so entries would never expire in a process that loads objects for
    months.
    """
    from tracekit.obj import core

    return core.CoreRelocator(local, tuple(targets))


def apply_core(plan: ProgramPlan, local: BTF, targets: Sequence[BTF], *, relocator: Any = None) -> None:
    """CO-RE-relocate the linked program in place (``relocator``: see :func:`new_relocator`)."""
    if not plan.core_relos:
        return
    from tracekit.obj import core

    core.relocate(
        plan.insns, plan.core_relos, local, targets, prog_name=plan.name,
        relocator=relocator if relocator is not None else new_relocator(local, targets),
    )


#: attach kinds whose program must be loaded with the BTF id of its target
_BTF_ATTACH_PREFIX = {"tp_btf": "btf_trace_", "fentry": "", "fexit": "", "fmod_ret": "", "lsm": "bpf_lsm_", "iter": "bpf_iter_"}
#: the attach kinds whose target id is looked up in the kernel's BTF at load time
BTF_ATTACH_KINDS = frozenset(_BTF_ATTACH_PREFIX)


def attach_btf_name(prog: ProgramSpec) -> tuple[str, Kind] | None:
    """The kernel BTF name and kind a program's attach id is looked up by (None: the
    program needs no attach id, or its target is set by hand before load).

    ``tp_btf/<tp>`` -> TYPEDEF ``btf_trace_<tp>``; ``lsm/<hook>`` -> FUNC ``bpf_lsm_<hook>``;
    ``iter/<name>`` -> FUNC ``bpf_iter_<name>``; fentry/fexit/fmod_ret -> the FUNC itself.
    Shared by the user-space search below and the in-kernel look-up
    (tracekit.kernel.btf_lookup), so both ask for the same type.
    """
    kind = prog.attach_kind
    if kind not in _BTF_ATTACH_PREFIX or not prog.attach_target:
        return None
    return _BTF_ATTACH_PREFIX[kind] + prog.attach_target, Kind.TYPEDEF if kind == "tp_btf" else Kind.FUNC


def attach_not_found(prog: ProgramSpec) -> NotSupportedError:
    """The error for an attach target no kernel BTF has (both look-up paths raise it)."""
    kind, target = prog.attach_kind, prog.attach_target
    name, want_kind = attach_btf_name(prog) or (target, Kind.FUNC)
    what = "tracepoint" if kind == "tp_btf" else "kernel function"
    return NotSupportedError(
        f"{kind}/{target}",
        detail=f"no {what} {target!r} in the kernel's BTF (looked for {want_kind.name} {name!r})",
    )


def find_attach_btf_id(plan: ProgramPlan, targets: Sequence[BTF]) -> None:
    """Resolve the kernel BTF id a tracing program attaches to (pure: uses ``targets``)."""
    want = attach_btf_name(plan.spec)
    if want is None:
        return
    name, want_kind = want
    for idx, btf in enumerate(targets):
        for tid in btf.find(name, want_kind):
            if idx > 0 and tid < targets[0].__len__():
                continue  # a split BTF also finds its base's types; vmlinux was searched first
            plan.attach_btf_id = tid
            plan.attach_btf_target = idx
            return
    raise attach_not_found(plan.spec)


def plan_program(spec: ObjectSpec, prog: ProgramSpec, targets: Sequence[BTF], *,
                 relocator: Any = None, attach_targets: Sequence[BTF] | None = None) -> ProgramPlan:
    """Link, CO-RE-relocate and resolve attach ids for one main program.

    Pass one ``relocator`` (:func:`new_relocator`) for every program of an object, or use
    :func:`plan_programs`, so CO-RE candidates are shared between them.
    """
    plan = link_program(spec, prog)
    if spec.btf is not None:
        apply_core(plan, spec.btf, targets, relocator=relocator)
    elif plan.core_relos:
        raise RelocationError(f"program {prog.name!r} has CO-RE relocations but the object has no BTF")
    # CO-RE may relocate against another kernel's BTF (btf=); attach ids are the running one's.
    find_attach_btf_id(plan, targets if attach_targets is None else attach_targets)
    return plan


def plan_programs(spec: ObjectSpec, progs: Iterable[ProgramSpec], targets: Sequence[BTF], *,
                  attach_targets: Sequence[BTF] | None = None) -> dict[str, ProgramPlan]:
    """:func:`plan_program` for several programs of ``spec`` with one shared relocator
    (which is dropped with the returned plans: nothing outlives the load)."""
    relocator = new_relocator(spec.btf, targets) if spec.btf is not None else None
    return {p.name: plan_program(spec, p, targets, relocator=relocator, attach_targets=attach_targets)
            for p in progs}
