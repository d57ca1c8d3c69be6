"""The machine-independent description of a BPF object: what :mod:`tracekit.obj.elf` produces.

Reading an ELF file gives the same :class:`ObjectSpec` on any machine; everything that
depends on the running kernel (CO-RE, externs, map fds) happens later, in the load plan
(:mod:`tracekit.obj.plan`) and the loader (:mod:`tracekit.object`).  Specs are plain mutable
dataclasses so users can adjust them before load (map sizes, autoload, rodata values).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from enum import Enum

from tracekit.btf.ext import BTFExt, CoreRelo, FuncInfo, LineInfo
from tracekit.btf.reader import BTF
from tracekit.obj.insn import Insn


class RelocKind(Enum):
    """What an ELF relocation against program code asks the loader to do."""

    MAP = "map"  # ldimm64 of a BTF-defined map symbol in .maps -> map fd
    DATA = "data"  # ldimm64 into .data/.rodata/.bss/.kconfig + offset -> map value address
    CALL = "call"  # bpf-to-bpf call -> relative offset to the callee once appended
    SUBPROG_ADDR = "subprog_addr"  # ldimm64 of a function's address (callbacks) -> BPF_PSEUDO_FUNC
    EXTERN_CALL = "extern_call"  # call of an undefined function: a kfunc, or a function of another object
    EXTERN_VAR = "extern_var"  # ldimm64 of an undefined variable: __ksym or __kconfig


@dataclass(slots=True)
class Relocation:
    """One relocation inside a function, in instruction indices relative to its start.

    * MAP: ``symbol`` is the map's name.
    * DATA: ``section`` is the data section (``.rodata``, ``.data.foo``, ``.bss``,
      ``.kconfig``) and ``offset`` the byte offset of the target inside it (symbol value
      plus the addend the compiler left in the instruction).
    * CALL / SUBPROG_ADDR: ``section`` and ``offset`` (an instruction index inside that
      section) identify the callee; ``symbol`` names it when the symbol table does.
    * EXTERN_CALL / EXTERN_VAR: ``symbol`` is the extern's full name (with ``___flavor``).
    """

    insn: int
    kind: RelocKind
    symbol: str = ""
    section: str = ""
    offset: int = 0


@dataclass
class FunctionSpec:
    """One function of an executable section: a main program or a subprogram.

    BTF.ext records (``func_info``, ``line_info``, ``core_relos``) are kept per function
    with instruction offsets relative to the function's first instruction, so a function
    can be appended to any program by shifting them.
    """

    name: str
    section: str
    offset: int  # index of the first instruction inside ``section``
    insns: list[Insn]
    relocations: list[Relocation] = field(default_factory=list)
    func_info: list[FuncInfo] = field(default_factory=list)
    line_info: list[LineInfo] = field(default_factory=list)
    core_relos: list[CoreRelo] = field(default_factory=list)
    is_global: bool = True

    @property
    def key(self) -> tuple[str, int]:
        return (self.section, self.offset)


@dataclass
class ProgramSpec(FunctionSpec):
    """A main program: a function in a ``SEC("...")`` section other than ``.text``."""

    prog_type: int = 0
    expected_attach_type: int = 0
    attach_kind: str = ""  # "tracepoint", "raw_tp", "tp_btf", "kprobe", "fentry", ... ("" = manual)
    attach_target: str = ""  # text after the section prefix, e.g. "syscalls/sys_enter_execve"
    sleepable: bool = False
    autoload: bool = True
    license: str = ""
    kern_version: int = 0


@dataclass
class MapSpec:
    """A map: BTF-defined (``.maps``) or an internal global-data map."""

    name: str
    type: int
    key_size: int = 0
    value_size: int = 0
    max_entries: int = 0
    flags: int = 0
    numa_node: int = 0
    map_extra: int = 0
    pinning: int = 0  # 0: none, 1: LIBBPF_PIN_BY_NAME
    key_type_id: int = 0  # BTF ids in the object's BTF (0: none)
    value_type_id: int = 0
    inner: MapSpec | None = None  # map-in-map template
    init_slots: dict[int, str] = field(default_factory=dict)  # slot -> map/program name
    # internal (global data) maps only:
    section: str = ""  # ".rodata", ".data.foo", ".bss", ".kconfig", or "" for .maps maps
    data: bytes | None = None  # initial contents (zeros for .bss); value_size bytes
    datasec_type_id: int = 0  # the section's DATASEC in the object BTF

    @property
    def is_internal(self) -> bool:
        return bool(self.section)

    @property
    def readonly(self) -> bool:
        """Frozen after its contents are written: ``.rodata*`` and ``.kconfig``."""
        return self.section.startswith(".rodata") or self.section == ".kconfig"

    def copy(self) -> MapSpec:
        return copy.deepcopy(self)


@dataclass
class ExternSpec:
    """An undefined symbol the loader (or linker) must resolve."""

    name: str  # full symbol name, possibly with ___flavor
    kind: str  # "kfunc", "ksym", "kconfig", or "func"/"var" (left for another BPF object)
    weak: bool
    btf_id: int = 0  # the local BTF VAR or FUNC describing it (0: untyped)
    section: str = ""  # ".ksyms", ".kconfig", or "" for functions
    offset: int = 0  # byte offset of a .kconfig variable inside the .kconfig map value
    # the variable's declared type in the object BTF (0 for functions: see btf_id's FUNC_PROTO).
    # Kept because the BTF fixup retypes .ksyms VARs to int, as the kernel wants them.
    type_id: int = 0

    @property
    def essential_name(self) -> str:
        from tracekit.btf.types import essential_name

        return essential_name(self.name)


@dataclass
class ObjectSpec:
    """Everything read from one BPF ELF object, before any kernel is consulted."""

    name: str  # the object's name (file stem), used for internal map names
    btf: BTF | None
    btf_ext: BTFExt | None
    license: str
    kern_version: int
    programs: dict[str, ProgramSpec]  # main programs by function name, in file order
    functions: dict[tuple[str, int], FunctionSpec]  # every function (mains too) by (section, insn index)
    maps: dict[str, MapSpec]  # BTF-defined maps by name, then internal maps by their libbpf name ("opensnoo.rodata")
    externs: dict[str, ExternSpec]  # by full symbol name
    sections: dict[str, bytes] = field(default_factory=dict)  # raw data sections by name (read-only copies)

    def function_at(self, section: str, offset: int) -> FunctionSpec | None:
        return self.functions.get((section, offset))
