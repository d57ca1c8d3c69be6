"""The machine-independent description of a BPF object: what :mod:`tracekit.obj.elf` produces.

Reading an ELF file gives the same :class:`ObjectSpec` on any machine; everything that
depends on the running kernel (CO-RE, externs, map fds) happens later, in the load plan
(:mod:`tracekit.obj.plan`) and the loader (:mod:`tracekit.object`).  Specs are plain mutable
classes so users can adjust them before load (map sizes, autoload, rodata values).
"""

from __future__ import annotations

from enum import Enum
from typing import ClassVar

from tracekit._record import Record
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


# Plain classes rather than dataclasses: see tracekit._record (start-up cost, issue 13).


class Relocation(Record):
    """One relocation inside a function, in instruction indices relative to its start.

    * MAP: ``symbol`` is the map's name.
    * DATA: ``section`` is the data section (``.rodata``, ``.data.foo``, ``.bss``,
      ``.kconfig``) and ``offset`` the byte offset of the target inside it (symbol value
      plus the addend the compiler left in the instruction).
    * CALL / SUBPROG_ADDR: ``section`` and ``offset`` (an instruction index inside that
      section) identify the callee; ``symbol`` names it when the symbol table does.
    * EXTERN_CALL / EXTERN_VAR: ``symbol`` is the extern's full name (with ``___flavor``).
    """

    __slots__ = ("insn", "kind", "symbol", "section", "offset")
    _fields = __slots__

    def __init__(self, insn: int, kind: RelocKind, symbol: str = "", section: str = "", offset: int = 0) -> None:
        self.insn = insn
        self.kind = kind
        self.symbol = symbol
        self.section = section
        self.offset = offset


class FunctionSpec(Record):
    """One function of an executable section: a main program or a subprogram.

    BTF.ext records (``func_info``, ``line_info``, ``core_relos``) are kept per function
    with instruction offsets relative to the function's first instruction, so a function
    can be appended to any program by shifting them.
    """

    _fields: ClassVar[tuple[str, ...]] = ("name", "section", "offset", "insns", "relocations", "func_info", "line_info",
                                "core_relos", "is_global")

    def __init__(self, name: str, section: str, offset: int, insns: list[Insn],
                 relocations: list[Relocation] | None = None, func_info: list[FuncInfo] | None = None,
                 line_info: list[LineInfo] | None = None, core_relos: list[CoreRelo] | None = None,
                 is_global: bool = True) -> None:
        self.name = name
        self.section = section
        self.offset = offset  # index of the first instruction inside ``section``
        self.insns = insns
        self.relocations: list[Relocation] = [] if relocations is None else relocations
        self.func_info: list[FuncInfo] = [] if func_info is None else func_info
        self.line_info: list[LineInfo] = [] if line_info is None else line_info
        self.core_relos: list[CoreRelo] = [] if core_relos is None else core_relos
        self.is_global = is_global

    @property
    def key(self) -> tuple[str, int]:
        return (self.section, self.offset)


class ProgramSpec(FunctionSpec):
    """A main program: a function in a ``SEC("...")`` section other than ``.text``."""

    _fields = (*FunctionSpec._fields, "prog_type", "expected_attach_type", "attach_kind", "attach_target",
               "sleepable", "autoload", "license", "kern_version")

    def __init__(self, name: str, section: str, offset: int, insns: list[Insn],
                 relocations: list[Relocation] | None = None, func_info: list[FuncInfo] | None = None,
                 line_info: list[LineInfo] | None = None, core_relos: list[CoreRelo] | None = None,
                 is_global: bool = True, prog_type: int = 0, expected_attach_type: int = 0,
                 attach_kind: str = "", attach_target: str = "", sleepable: bool = False,
                 autoload: bool = True, license: str = "", kern_version: int = 0) -> None:
        super().__init__(name, section, offset, insns, relocations, func_info, line_info, core_relos, is_global)
        self.prog_type = prog_type
        self.expected_attach_type = expected_attach_type
        self.attach_kind = attach_kind  # "tracepoint", "raw_tp", "tp_btf", "kprobe", "fentry", ... ("" = manual)
        self.attach_target = attach_target  # text after the section prefix, e.g. "syscalls/sys_enter_execve"
        self.sleepable = sleepable
        self.autoload = autoload
        self.license = license
        self.kern_version = kern_version


class MapSpec(Record):
    """A map: BTF-defined (``.maps``) or an internal global-data map."""

    _fields = ("name", "type", "key_size", "value_size", "max_entries", "flags", "numa_node", "map_extra",
               "pinning", "key_type_id", "value_type_id", "inner", "init_slots", "section", "data",
               "datasec_type_id")

    def __init__(self, name: str, type: int, key_size: int = 0, value_size: int = 0,
                 max_entries: int = 0, flags: int = 0, numa_node: int = 0, map_extra: int = 0,
                 pinning: int = 0, key_type_id: int = 0, value_type_id: int = 0,
                 inner: MapSpec | None = None, init_slots: dict[int, str] | None = None,
                 section: str = "", data: bytes | None = None, datasec_type_id: int = 0) -> None:
        self.name = name
        self.type = type
        self.key_size = key_size
        self.value_size = value_size
        self.max_entries = max_entries
        self.flags = flags
        self.numa_node = numa_node
        self.map_extra = map_extra
        self.pinning = pinning  # 0: none, 1: LIBBPF_PIN_BY_NAME
        self.key_type_id = key_type_id  # BTF ids in the object's BTF (0: none)
        self.value_type_id = value_type_id
        self.inner = inner  # map-in-map template
        self.init_slots: dict[int, str] = {} if init_slots is None else init_slots  # slot -> map/program name
        # internal (global data) maps only:
        self.section = section  # ".rodata", ".data.foo", ".bss", ".kconfig", or "" for .maps maps
        self.data = data  # initial contents (zeros for .bss); value_size bytes
        self.datasec_type_id = datasec_type_id  # the section's DATASEC in the object BTF

    @property
    def is_internal(self) -> bool:
        return bool(self.section)

    @property
    def readonly(self) -> bool:
        """Frozen after its contents are written: ``.rodata*`` and ``.kconfig``."""
        return self.section.startswith(".rodata") or self.section == ".kconfig"

    def copy(self) -> MapSpec:
        import copy

        return copy.deepcopy(self)


class ExternSpec(Record):
    """An undefined symbol the loader (or linker) must resolve."""

    _fields = ("name", "kind", "weak", "btf_id", "section", "offset", "type_id")

    def __init__(self, name: str, kind: str, weak: bool, btf_id: int = 0, section: str = "", offset: int = 0,
                 type_id: int = 0) -> None:
        self.name = name  # full symbol name, possibly with ___flavor
        self.kind = kind  # "kfunc", "ksym", "kconfig", or "func"/"var" (left for another BPF object)
        self.weak = weak
        self.btf_id = btf_id  # the local BTF VAR or FUNC describing it (0: untyped)
        self.section = section  # ".ksyms", ".kconfig", or "" for functions
        self.offset = offset  # byte offset of a .kconfig variable inside the .kconfig map value
        # the variable's declared type in the object BTF (0 for functions: see btf_id's FUNC_PROTO).
        # Kept because the BTF fixup retypes .ksyms VARs to int, as the kernel wants them.
        self.type_id = type_id

    @property
    def essential_name(self) -> str:
        from tracekit.btf.types import essential_name

        return essential_name(self.name)


class ObjectSpec(Record):
    """Everything read from one BPF ELF object, before any kernel is consulted."""

    _fields = ("name", "btf", "btf_ext", "license", "kern_version", "programs", "functions", "maps", "externs",
               "sections")

    def __init__(self, name: str, btf: BTF | None, btf_ext: BTFExt | None, license: str, kern_version: int,
                 programs: dict[str, ProgramSpec], functions: dict[tuple[str, int], FunctionSpec],
                 maps: dict[str, MapSpec], externs: dict[str, ExternSpec],
                 sections: dict[str, bytes] | None = None) -> None:
        self.name = name  # the object's name (file stem), used for internal map names
        self.btf = btf
        self.btf_ext = btf_ext
        self.license = license
        self.kern_version = kern_version
        self.programs = programs  # main programs by function name, in file order
        self.functions = functions  # every function (mains too) by (section, insn index)
        # BTF-defined maps by name, then internal maps by their libbpf name ("opensnoo.rodata")
        self.maps = maps
        self.externs = externs  # by full symbol name
        # raw data sections by name (read-only copies)
        self.sections: dict[str, bytes] = {} if sections is None else sections

    def function_at(self, section: str, offset: int) -> FunctionSpec | None:
        return self.functions.get((section, offset))
