"""Read a clang-built BPF ELF object into a machine-independent :class:`ObjectSpec`.

This is libbpf's "open" phase (``bpf_object__elf_collect``, ``collect_externs``,
``btf_fixup_datasec``, ``parse_btf_map_def``, ``record_reloc``) as pure Python: no
syscalls, and the same result on every machine.  What it does:

* validates the file (ELF64, little endian, ``EM_BPF``, ``ET_REL``, a symbol table);
* reads ``license``, ``version``, ``.BTF`` and ``.BTF.ext``;
* fixes the object's BTF the way the kernel needs it (DATASEC sizes and VAR offsets
  clang leaves as 0, ``.ksyms``/``.kconfig`` extern layout, hidden symbols made static),
  re-encoded with :class:`~tracekit.btf.writer.BTFBuilder` so ``spec.btf`` is the BTF the
  loader will send.  No type id changes and the string table is kept as a prefix, so
  ``.BTF.ext`` records stay valid against it;
* BTF-defined maps from ``.maps``, internal maps for ``.data*``/``.rodata*``/``.bss*`` and
  ``.kconfig``;
* externs, functions, programs (type from the section name), per-function BTF.ext records
  and classified relocations.

The ELF container is parsed with :mod:`struct` directly: an object has a few dozen
sections and a few hundred symbols, and a table-driven reader is an order of magnitude
faster than a general ELF library while being just as strict about bounds.

Internal map names follow libbpf (``internal_map_name``), so maps look the same in
``bpftool map`` whichever loader created them: ``<object name prefix><section>`` where the
section part keeps at least 7 characters (``.bss`` still reserves 7) and the whole fits in
15 characters (``opensnoop`` + ``.rodata`` -> ``opensnoo.rodata``; ``.kconfig`` leaves 7
characters of prefix).  Custom sections with a second dot (``.data.foo``, ``.rodata.str1.1``)
get no prefix, only their first 15 characters.  ``spec.maps`` is keyed by those names.
"""

from __future__ import annotations

import os
import re
import stat
import struct
from bisect import bisect_right
from collections.abc import Callable, MutableSequence

from tracekit._record import Record
from tracekit.btf.ext import BTFExt, CoreRelo, FuncInfo, LineInfo
from tracekit.btf.reader import BTF
from tracekit.btf.types import (
    INT_BOOL,
    INT_SIGNED,
    LINKAGE_EXTERN,
    LINKAGE_GLOBAL,
    LINKAGE_STATIC,
    Kind,
    Param,
    Type,
)
from tracekit.btf.writer import BTFBuilder
from tracekit.errors import RESOURCE_ERRNOS, BTFError, ELFError, RelocationError, SectionError, error_for_errno
from tracekit.obj.insn import (
    BPF_PSEUDO_CALL,
    BPF_PSEUDO_FUNC,
    CALL,
    INSN_SIZE,
    LD_IMM64,
    Insn,
    decode,
)
from tracekit.obj.sections import parse_section
from tracekit.obj.spec import (
    ExternSpec,
    FunctionSpec,
    MapSpec,
    ObjectSpec,
    ProgramSpec,
    Relocation,
    RelocKind,
)
from tracekit.uapi import BPF_F_MMAPABLE, BPF_F_RDONLY_PROG, BPF_OBJ_NAME_LEN, MapType

__all__ = ["load_spec", "internal_map_name", "object_name"]

# --- ELF constants -------------------------------------------------------------------

EM_BPF = 247
ET_REL = 1
SHT_PROGBITS = 1
SHT_SYMTAB = 2
SHT_NOBITS = 8
SHT_REL = 9
SHF_EXECINSTR = 0x4
STB_LOCAL, STB_GLOBAL, STB_WEAK = 0, 1, 2
STT_NOTYPE, STT_OBJECT, STT_FUNC, STT_SECTION = 0, 1, 2, 3
STV_INTERNAL, STV_HIDDEN = 1, 2
SHN_UNDEF = 0
SHN_LORESERVE = 0xFF00
SHN_XINDEX = 0xFFFF

_EHDR = struct.Struct("<16sHHIQQQIHHHHHH")
_SHDR = struct.Struct("<IIQQQQIIQQ")
_SYM = struct.Struct("<IBBHQQ")
_REL = struct.Struct("<QQ")

#: Largest zero-filled data section (``.bss``, ``.bss.*``: SHT_NOBITS) an object may
#: declare, in bytes; the ``.kconfig`` area is held to the same bound.  A NOBITS section
#: takes no room in the file, so without a bound an 11 KB object could make tracekit
#: allocate gigabytes.  Objects that really need more raise it before opening them:
#: ``tracekit.obj.elf.MAX_NOBITS_SIZE = 1 << 30``.
MAX_NOBITS_SIZE = 64 << 20

MAPS_SEC = ".maps"
KCONFIG_SEC = ".kconfig"
KSYMS_SEC = ".ksyms"
# libbpf's dummy VAR that stands in for kfuncs inside the .ksyms DATASEC
DUMMY_KSYM = "dummy_ksym"

# kernel attribute: VAR linkage "global allocated" (the value of LINKAGE_GLOBAL for VARs)
VAR_GLOBAL_ALLOCATED = LINKAGE_GLOBAL
_MAP_IN_MAP = (MapType.ARRAY_OF_MAPS, MapType.HASH_OF_MAPS)


# Plain classes rather than dataclasses: see tracekit._record (start-up cost, issue 13).


class _Section(Record):
    __slots__ = ("index", "name", "type", "flags", "offset", "size", "link", "info", "entsize", "data")
    _fields = __slots__

    def __init__(self, index: int, name: str, type: int, flags: int, offset: int, size: int,
                 link: int, info: int, entsize: int, data: bytes = b"") -> None:
        self.index = index
        self.name = name
        self.type = type
        self.flags = flags
        self.offset = offset
        self.size = size
        self.link = link
        self.info = info
        self.entsize = entsize
        self.data = data

    @property
    def is_exec(self) -> bool:
        return self.type == SHT_PROGBITS and bool(self.flags & SHF_EXECINSTR)


class _Sym(Record):
    __slots__ = ("index", "name", "value", "size", "bind", "type", "visibility", "shndx")
    _fields = __slots__

    def __init__(self, index: int, name: str, value: int, size: int, bind: int, type: int,
                 visibility: int, shndx: int) -> None:
        self.index = index
        self.name = name
        self.value = value
        self.size = size
        self.bind = bind
        self.type = type
        self.visibility = visibility
        self.shndx = shndx

    @property
    def is_extern(self) -> bool:
        # libbpf's rule: undefined, global or weak, no type
        return self.shndx == SHN_UNDEF and self.bind in (STB_GLOBAL, STB_WEAK) and self.type == STT_NOTYPE

    @property
    def hidden(self) -> bool:
        return self.visibility in (STV_HIDDEN, STV_INTERNAL)


class _ExecSection(Record):
    _fields = ("sec", "insns", "funcs", "starts")

    def __init__(self, sec: _Section, insns: list[Insn], funcs: list[FunctionSpec] | None = None,
                 starts: list[int] | None = None) -> None:
        self.sec = sec
        self.insns = insns
        self.funcs: list[FunctionSpec] = [] if funcs is None else funcs
        self.starts: list[int] = [] if starts is None else starts  # funcs' offsets, sorted

    def function_at(self, insn: int) -> FunctionSpec | None:
        i = bisect_right(self.starts, insn) - 1
        if i < 0:
            return None
        f = self.funcs[i]
        return f if insn < f.offset + len(f.insns) else None


# --- public helpers ------------------------------------------------------------------


def object_name(path: str | os.PathLike[str]) -> str:
    """The object name libbpf derives from a path: the file name up to its first dot."""
    base = os.path.basename(os.fspath(path))
    return base.split(".", 1)[0] or base


_BAD_NAME_CHARS = re.compile(r"[^A-Za-z0-9_.]")


def internal_map_name(obj_name: str, section: str) -> str:
    """libbpf's kernel-visible name of the global-data map for ``section``.

    The section part keeps at least 7 characters (so ``.bss`` reserves 7), the whole fits
    in ``BPF_OBJ_NAME_LEN - 1`` characters, and custom sections (a second dot, e.g.
    ``.data.foo``) get no object prefix.  Characters the kernel refuses become ``_``.
    """
    max_len = BPF_OBJ_NAME_LEN - 1
    sfx_len = min(max(7, len(section)), max_len)
    pfx_len = 0 if "." in section[1:] else min(max_len - sfx_len, len(obj_name))
    return _BAD_NAME_CHARS.sub("_", obj_name[:pfx_len] + section[:sfx_len])


# --- the ELF container ---------------------------------------------------------------


def _cstr(table: bytes, off: int, what: str) -> str:
    if off >= len(table) and off != 0:
        raise ELFError(f"{what}: string offset {off} is past the end of its string table")
    end = table.find(b"\0", off)
    if end < 0:
        raise ELFError(f"{what}: unterminated string at offset {off}")
    return table[off:end].decode("utf-8", "replace")


def _read_container(data: bytes, what: str) -> tuple[list[_Section], list[_Sym], int]:
    """Sections (with their bytes) and symbols, after validating the header."""
    if len(data) < _EHDR.size:
        raise ELFError(f"{what}: {len(data)} bytes is too short for an ELF header (truncated file?)")
    if data[:4] != b"\x7fELF":
        raise ELFError(f"{what}: not an ELF file (bad magic {data[:4]!r}); expected a clang -target bpf object")
    ident = data[:16]
    if ident[4] != 2:
        raise ELFError(f"{what}: ELF class {ident[4]} is not ELF64; BPF objects are 64-bit (clang -target bpf)")
    if ident[5] != 1:
        raise ELFError(
            f"{what}: big-endian ELF; this machine loads little-endian BPF (build with -target bpf or bpfel)"
        )
    (_, e_type, e_machine, _, _, _, e_shoff, _, _, _, _, e_shentsize, e_shnum, e_shstrndx) = _EHDR.unpack_from(
        data, 0
    )
    if e_machine != EM_BPF:
        raise ELFError(
            f"{what}: ELF machine {e_machine} is not BPF ({EM_BPF}); compile the program with clang -target bpf"
        )
    if e_type != ET_REL:
        raise ELFError(f"{what}: ELF type {e_type} is not a relocatable object (ET_REL); use the .o clang produced")
    if e_shoff == 0 or e_shentsize != _SHDR.size:
        raise ELFError(f"{what}: missing or malformed section header table")
    if e_shoff + _SHDR.size > len(data):
        raise ELFError(f"{what}: section header table lies past the end of the file (truncated?)")
    if e_shnum == 0:  # extended numbering: the count lives in section 0
        e_shnum = _SHDR.unpack_from(data, e_shoff)[5]
    if e_shstrndx == SHN_XINDEX:
        e_shstrndx = _SHDR.unpack_from(data, e_shoff)[6]
    if e_shoff + e_shnum * _SHDR.size > len(data):
        raise ELFError(f"{what}: {e_shnum} section headers run past the end of the file (truncated?)")
    raw = []
    for i in range(e_shnum):
        name, typ, flags, _addr, off, size, link, info, _align, entsize = _SHDR.unpack_from(data, e_shoff + i * _SHDR.size)
        if typ != SHT_NOBITS and i and off + size > len(data):
            raise ELFError(f"{what}: section #{i} runs past the end of the file (truncated?)")
        raw.append((name, typ, flags, off, size, link, info, entsize))
    if not 0 < e_shstrndx < e_shnum:
        raise ELFError(f"{what}: invalid section name table index {e_shstrndx}")
    _, _, _, so, ss, _, _, _ = raw[e_shstrndx]
    shstr = data[so : so + ss]
    sections = []
    symtab = None
    for i, (name, typ, flags, off, size, link, info, entsize) in enumerate(raw):
        sname = _cstr(shstr, name, what) if i else ""
        body = b"" if typ == SHT_NOBITS or i == 0 else data[off : off + size]
        s = _Section(i, sname, typ, flags, off, size, link, info, entsize, body)
        sections.append(s)
        if typ == SHT_SYMTAB:
            if symtab is not None:
                raise ELFError(f"{what}: more than one symbol table")
            symtab = s
    if symtab is None:
        raise ELFError(f"{what}: no symbol table (.symtab): the object was stripped; rebuild it without stripping")
    if symtab.entsize != _SYM.size or symtab.size % _SYM.size:
        raise ELFError(f"{what}: malformed symbol table (entry size {symtab.entsize})")
    if not 0 < symtab.link < len(sections):
        raise ELFError(f"{what}: symbol table has no valid string table")
    strtab = sections[symtab.link].data
    syms = []
    for idx, (st_name, info, other, shndx, value, size) in enumerate(_SYM.iter_unpack(symtab.data)):
        syms.append(
            _Sym(idx, _cstr(strtab, st_name, what) if st_name else "", value, size, info >> 4, info & 0xF, other & 3, shndx)
        )
    return sections, syms, symtab.index


# --- the loader ----------------------------------------------------------------------


class _Reader:
    def __init__(self, data: bytes, name: str, what: str) -> None:
        self.what = what
        self.name = name
        self.sections, self.syms, self.symtab_idx = _read_container(data, what)
        self.license = ""
        self.kern_version = 0
        self.btf: BTF | None = None
        self.btf_ext: BTFExt | None = None
        self.exec: dict[int, _ExecSection] = {}
        self.data_secs: dict[int, _Section] = {}  # .data* / .rodata* / .bss*
        self.maps_sec: _Section | None = None
        self.rels: list[_Section] = []
        self.maps_rel: _Section | None = None
        self.externs: dict[str, ExternSpec] = {}
        self.extern_by_sym: dict[int, ExternSpec] = {}
        self.datasec_ids: dict[str, int] = {}
        self.kconfig_size = 0

    # -- section classification (bpf_object__elf_collect) --

    def collect(self) -> None:
        btf_sec = ext_sec = None
        for s in self.sections[1:]:
            n = s.name
            if n == "license":
                self.license = s.data.split(b"\0", 1)[0].decode("utf-8", "replace")
            elif n == "version":
                if len(s.data) != 4:
                    raise ELFError(f"{self.what}: 'version' section must be 4 bytes, is {len(s.data)}")
                self.kern_version = struct.unpack("<I", s.data)[0]
            elif n == "maps":
                raise ELFError(
                    f"{self.what}: legacy map definitions in the 'maps' section are not supported; "
                    f'declare maps the BTF way: struct {{ __uint(type, ...); ... }} name SEC(".maps");'
                )
            elif n == MAPS_SEC:
                self.maps_sec = s
            elif n == ".BTF":
                btf_sec = s
            elif n == ".BTF.ext":
                ext_sec = s
            elif s.type == SHT_PROGBITS and s.size > 0:
                if s.is_exec:
                    if s.size % INSN_SIZE:
                        raise ELFError(f"{self.what}: code section {n!r} size {s.size} is not a multiple of 8")
                    self.exec[s.index] = _ExecSection(s, decode(s.data))
                elif n == ".data" or n.startswith(".data.") or n == ".rodata" or n.startswith(".rodata."):
                    self.data_secs[s.index] = s
            elif s.type == SHT_NOBITS and (n == ".bss" or n.startswith(".bss.")) and s.size > 0:
                if s.size > MAX_NOBITS_SIZE:
                    raise ELFError(
                        f"{self.what}: section {n!r} asks for {s.size} zero-filled bytes, more than "
                        f"tracekit.obj.elf.MAX_NOBITS_SIZE ({MAX_NOBITS_SIZE}); raise that limit "
                        "before opening the object if it is really that large"
                    )
                self.data_secs[s.index] = s
            elif s.type == SHT_REL:
                if s.entsize != _REL.size or s.size % _REL.size or s.info >= len(self.sections):
                    raise ELFError(f"{self.what}: malformed relocation section {n!r}")
                target = self.sections[s.info]
                if target.is_exec:
                    self.rels.append(s)
                elif target.name == MAPS_SEC:
                    self.maps_rel = s
        if btf_sec is not None:
            try:
                self.btf = BTF(btf_sec.data, name=f"{self.name}.BTF")
            except BTFError as e:
                raise BTFError(f"{self.what}: {e}") from None
        if ext_sec is not None and self.btf is not None:
            self.btf_ext = BTFExt.parse(ext_sec.data, self.btf)

    # -- functions and programs (bpf_object__add_programs) --

    def collect_functions(self) -> None:
        for sym in self.syms:
            es = self.exec.get(sym.shndx)
            if es is None or sym.type != STT_FUNC:
                continue
            sec = es.sec
            if sym.value % INSN_SIZE or sym.size % INSN_SIZE or sym.value + sym.size > sec.size:
                raise ELFError(
                    f"{self.what}: function {sym.name!r} at byte {sym.value} (size {sym.size}) "
                    f"does not fit section {sec.name!r}"
                )
            start = sym.value // INSN_SIZE
            insns = es.insns[start : start + sym.size // INSN_SIZE]
            is_global = sym.bind != STB_LOCAL and not sym.hidden
            if sec.name == ".text":
                fn: FunctionSpec = FunctionSpec(sym.name, sec.name, start, insns, is_global=is_global)
            else:
                if sym.bind == STB_LOCAL:
                    raise ELFError(
                        f"{self.what}: program {sym.name!r} in section {sec.name!r} is static; "
                        f"BPF programs must be global functions (drop 'static')"
                    )
                try:
                    sd = parse_section(sec.name)
                except SectionError as e:
                    raise SectionError(f"{self.what}: program {sym.name!r}: {e}") from None
                fn = ProgramSpec(
                    sym.name,
                    sec.name,
                    start,
                    insns,
                    is_global=is_global,
                    prog_type=sd.prog_type,
                    expected_attach_type=sd.expected_attach_type,
                    attach_kind=sd.attach_kind,
                    attach_target=sd.attach_target,
                    sleepable=sd.sleepable,
                    autoload=sd.autoload,
                    license=self.license,
                    kern_version=self.kern_version,
                )
            es.funcs.append(fn)
        for es in self.exec.values():
            es.funcs.sort(key=lambda f: f.offset)
            es.starts = [f.offset for f in es.funcs]
            for a, b in zip(es.funcs, es.funcs[1:]):
                if a.offset + len(a.insns) > b.offset:
                    raise ELFError(f"{self.what}: functions {a.name!r} and {b.name!r} overlap in {es.sec.name!r}")

    def split_btf_ext(self) -> None:
        ext = self.btf_ext
        if ext is None:
            return
        by_name = {es.sec.name: es for es in self.exec.values()}
        for sec_name, recs in ext.func_info.items():
            es = by_name.get(sec_name)
            if es is not None:
                for r in recs:
                    f = es.function_at(r.insn)
                    if f is not None:
                        f.func_info.append(FuncInfo(r.insn - f.offset, r.type_id))
        for sec_name, lrecs in ext.line_info.items():
            es = by_name.get(sec_name)
            if es is not None:
                for lr in lrecs:
                    f = es.function_at(lr.insn)
                    if f is not None:
                        f.line_info.append(LineInfo(lr.insn - f.offset, lr.file_name_off, lr.line_off, lr.line_col))
        for sec_name, crecs in ext.core_relos.items():
            es = by_name.get(sec_name)
            if es is None:
                continue
            for cr in crecs:
                f = es.function_at(cr.insn)
                if f is None:
                    raise RelocationError(
                        f"{self.what}: CO-RE relocation at insn {cr.insn} of section {sec_name!r} is outside every function"
                    )
                f.core_relos.append(CoreRelo(cr.insn - f.offset, cr.type_id, cr.access, cr.kind, cr.access_off))

    # -- externs (bpf_object__collect_externs) --

    def collect_externs(self, datasec_of: dict[int, str]) -> None:
        btf = self.btf
        for sym in self.syms:
            if not sym.is_extern or not sym.name:
                continue
            if btf is None:
                raise ELFError(
                    f"{self.what}: extern {sym.name!r} needs BTF to be resolved; compile with clang -g"
                )
            tid = 0
            for cand in btf.find(sym.name):
                k = btf.kind_of(cand)
                if k in (Kind.VAR, Kind.FUNC):
                    tid = cand
                    break
            if not tid:
                raise ELFError(f"{self.what}: no BTF VAR or FUNC describes extern {sym.name!r}")
            t = btf.type(tid)
            if t.linkage != LINKAGE_EXTERN:
                raise ELFError(f"{self.what}: BTF {t.kind.name} {sym.name!r} is not declared extern")
            sec = datasec_of.get(tid, "")
            is_func = t.kind == Kind.FUNC
            if sec == KCONFIG_SEC:
                if is_func:
                    raise ELFError(f"{self.what}: extern function {sym.name!r} cannot live in {KCONFIG_SEC}")
                kind = "kconfig"
            elif sec == KSYMS_SEC:
                kind = "kfunc" if is_func else "ksym"
            elif sec:
                raise ELFError(f"{self.what}: extern {sym.name!r} is in unsupported section {sec!r}")
            else:
                kind = "func" if is_func else "var"
            ext = ExternSpec(sym.name, kind, sym.bind == STB_WEAK, tid, sec, type_id=0 if is_func else t.type)
            self.externs[sym.name] = ext
            self.extern_by_sym[sym.index] = ext

    # -- BTF fixups (collect_externs' BTF part, btf_fixup_datasec) --

    def fix_btf(self) -> None:
        btf = self.btf
        if btf is None:
            return
        b = BTFBuilder.from_btf(btf)
        types = b.types
        datasecs: list[int] = []
        datasec_of: dict[int, str] = {}
        int32 = 0
        # One pass over the raw type headers (no decoding): DATASECs and a 32-bit int.
        words = btf._words
        start = btf.start_id
        k_datasec, k_int = int(Kind.DATASEC), int(Kind.INT)
        for local, o in enumerate(btf._offsets):
            k = (words[o + 1] >> 24) & 0x1F
            if k == k_datasec:
                tid = local + start
                datasecs.append(tid)
                t = types[tid]
                self.datasec_ids.setdefault(t.name, tid)
                for vs in t.secinfos:
                    if not 0 < vs.type < len(btf):
                        raise BTFError(
                            f"{self.what}: BTF DATASEC {t.name!r} names type id {vs.type}, "
                            f"past the object's {len(btf)} types"
                        )
                    datasec_of[vs.type] = t.name
            elif k == k_int and not int32 and words[o + 2] == 4 and (words[o + 3] & 0xFF) == 32:
                int32 = local + start
        self.collect_externs(datasec_of)

        hidden_funcs = {s.name for s in self.syms if s.type == STT_FUNC and s.bind != STB_LOCAL and s.hidden}
        # Symbols of defined variables by name, for DATASEC offsets and visibility.
        var_syms: dict[str, _Sym] = {}
        for sym in self.syms:
            if sym.type == STT_OBJECT and sym.bind in (STB_GLOBAL, STB_WEAK) and sym.shndx != SHN_UNDEF:
                var_syms.setdefault(sym.name, sym)
        sec_size = {s.name: s.size for s in self.sections[1:]}

        for sid in datasecs:
            sec = types[sid]
            if sec.name == KSYMS_SEC:
                int32 = self._fix_ksyms(b, sec, int32)
            elif sec.name == KCONFIG_SEC:
                self._fix_kconfig(btf, types, sec)
            else:
                fix_offsets = sec.size == 0
                if fix_offsets:
                    size = sec_size.get(sec.name, 0)
                    if not size:
                        if not sec.secinfos:
                            continue
                        raise ELFError(
                            f"{self.what}: BTF DATASEC {sec.name!r} has no ELF section to take its size from"
                        )
                    sec.size = size
                for vs in sec.secinfos:
                    var = types[vs.type]
                    if var.kind != Kind.VAR:
                        raise ELFError(f"{self.what}: DATASEC {sec.name!r} holds a {var.kind.name}, not a VAR")
                    if var.linkage in (LINKAGE_STATIC, LINKAGE_EXTERN):
                        continue
                    vsym = var_syms.get(var.name)
                    if vsym is None:
                        raise ELFError(f"{self.what}: no ELF symbol for variable {var.name!r} of {sec.name!r}")
                    if fix_offsets:
                        vs.offset = vsym.value
                    if vsym.hidden:
                        # __hidden globals are private to the object: static to the kernel too
                        var.linkage = LINKAGE_STATIC
            sec.secinfos.sort(key=lambda v: v.offset)

        # Hidden global functions: verified in their caller's context, like static ones.
        for es in self.exec.values():
            for f in es.funcs:
                if f.name in hidden_funcs:
                    for fid in btf.find(f.name, Kind.FUNC):
                        t = types[fid]
                        if t.linkage == LINKAGE_GLOBAL:
                            t.linkage = LINKAGE_STATIC
        self.btf = BTF(b.encode(), name=btf.name)

    def _fix_ksyms(self, b: BTFBuilder, sec: Type, int32: int) -> int:
        types = b.types
        if not int32:
            int32 = b.add_type(Type(Kind.INT, "int", size=4, encoding=INT_SIGNED, bits=32))
        dummy = 0
        if any(types[vs.type].kind == Kind.FUNC for vs in sec.secinfos):
            dummy = b.add_type(Type(Kind.VAR, DUMMY_KSYM, type=int32, linkage=VAR_GLOBAL_ALLOCATED))
        off = 0
        for vs in sec.secinfos:
            vt = types[vs.type]
            if vt.name not in self.externs:
                raise ELFError(f"{self.what}: BTF {vt.kind.name} {vt.name!r} in .ksyms has no extern symbol")
            if vt.kind == Kind.FUNC:
                # The kernel refuses extern FUNCs and unnamed parameters of kfunc prototypes
                # here; libbpf's answer, kept for identical BTF: a dummy VAR in the DATASEC
                # and its name lent to nameless parameters.
                if not 0 < vt.type < len(types) or types[vt.type].kind != Kind.FUNC_PROTO:
                    raise BTFError(f"{self.what}: BTF FUNC {vt.name!r} has no FUNC_PROTO (type {vt.type})")
                proto = types[vt.type]
                if any(p.type and not p.name for p in proto.params):
                    proto.params = [Param(DUMMY_KSYM if (p.type and not p.name) else p.name, p.type) for p in proto.params]
                vs.type = dummy
                vt.linkage = LINKAGE_GLOBAL
            else:
                vt.linkage = VAR_GLOBAL_ALLOCATED
                vt.type = int32
            vs.offset = off
            vs.size = 4
            off += 4
        sec.size = off
        return int32

    def _fix_kconfig(self, btf: BTF, types: MutableSequence[Type], sec: Type) -> None:
        # libbpf's layout: by alignment (descending), then size (ascending), then name
        layout = []
        for ext in self.externs.values():
            if ext.kind != "kconfig":
                continue
            try:
                size = btf.size_of(ext.type_id)
                align = btf.alignment_of(ext.type_id)
            except BTFError as e:
                raise ELFError(f"{self.what}: kconfig extern {ext.name!r}: {e}") from None
            if not _kconfig_type_ok(btf, ext.type_id):
                raise ELFError(
                    f"{self.what}: kconfig extern {ext.name!r} has type {btf.describe(ext.type_id)!r}; "
                    f"use bool, char, a 1/2/4/8-byte integer, enum libbpf_tristate or a char array"
                )
            layout.append((-align, size, ext.name, ext, align))
        layout.sort(key=lambda x: x[:3])
        off = 0
        for _, size, _, ext, align in layout:
            off = (off + align - 1) // align * align
            ext.offset = off
            off += size
        if off > MAX_NOBITS_SIZE:
            raise ELFError(
                f"{self.what}: the .kconfig externs need {off} bytes, more than "
                f"tracekit.obj.elf.MAX_NOBITS_SIZE ({MAX_NOBITS_SIZE})"
            )
        self.kconfig_size = off
        sec.size = off
        for vs in sec.secinfos:
            var = types[vs.type]
            vext = self.externs.get(var.name)
            if vext is None:
                raise ELFError(f"{self.what}: BTF VAR {var.name!r} in .kconfig has no extern symbol")
            vs.offset = vext.offset
            # the kernel accepts only static or allocated VARs
            var.linkage = VAR_GLOBAL_ALLOCATED

    # -- maps --

    def parse_maps(self) -> dict[str, MapSpec]:
        maps: dict[str, MapSpec] = {}
        self.map_at: dict[int, MapSpec] = {}  # .maps offset -> map
        self.map_ranges: list[tuple[int, int, MapSpec, int]] = []  # (start, end, map, var type id)
        sec = self.maps_sec
        if sec is not None and sec.size:
            btf = self.btf
            sid = self.datasec_ids.get(MAPS_SEC)
            if btf is None or sid is None:
                raise ELFError(f"{self.what}: BTF-defined maps need the object's BTF (.BTF); compile with clang -g")
            for vs in btf.type(sid).secinfos:
                var = btf.type(vs.type)
                if var.kind != Kind.VAR:
                    raise ELFError(f"{self.what}: .maps holds a {var.kind.name}, not a map variable")
                m = self._parse_map_def(var.name, var.type, inner_allowed=True)
                maps[m.name] = m
                self.map_at[vs.offset] = m
                self.map_ranges.append((vs.offset, vs.offset + vs.size, m, var.type))
        if self.maps_rel is not None:
            self._map_init_slots()
        # internal maps, in section order, then .kconfig (libbpf's order)
        for idx in sorted(self.data_secs):
            s = self.data_secs[idx]
            m = self._internal_map(s.name, s.size, bytes(s.size) if s.type == SHT_NOBITS else s.data)
            maps[m.name] = m
        if any(e.kind == "kconfig" for e in self.externs.values()) and self.kconfig_size:
            m = self._internal_map(KCONFIG_SEC, self.kconfig_size, bytes(self.kconfig_size))
            maps[m.name] = m
        return maps

    def _internal_map(self, section: str, size: int, data: bytes) -> MapSpec:
        readonly = section.startswith(".rodata") or section == KCONFIG_SEC
        sid = self.datasec_ids.get(section, 0)
        flags = BPF_F_RDONLY_PROG if readonly else 0
        # libbpf: mmapable only when a variable is visible to user space (a non-static VAR)
        btf = self.btf
        if sid and btf is not None and any(
            btf.kind_of(vs.type) == Kind.VAR and btf.type(vs.type).linkage != LINKAGE_STATIC
            for vs in btf.type(sid).secinfos
        ):
            flags |= BPF_F_MMAPABLE
        return MapSpec(
            name=internal_map_name(self.name, section),
            type=int(MapType.ARRAY),
            key_size=4,
            value_size=size,
            max_entries=1,
            flags=flags,
            value_type_id=sid,
            section=section,
            data=bytes(data),
            datasec_type_id=sid,
        )

    def _map_int(self, map_name: str, field_name: str, tid: int) -> int:
        btf = self.btf
        assert btf is not None
        t = btf.resolve(tid)
        if t.kind != Kind.PTR:
            raise ELFError(f"{self.what}: map {map_name!r}: field {field_name!r} must be __uint(), got {t.kind.name}")
        arr = btf.type(t.type)
        if arr.kind != Kind.ARRAY:
            raise ELFError(f"{self.what}: map {map_name!r}: field {field_name!r} must be __uint(), got PTR to {arr.kind.name}")
        return arr.nelems

    def _map_long(self, map_name: str, field_name: str, tid: int) -> int:
        btf = self.btf
        assert btf is not None
        t = btf.resolve(tid)
        if t.kind == Kind.PTR:
            return self._map_int(map_name, field_name, tid)
        if t.kind in (Kind.ENUM, Kind.ENUM64) and len(t.values) == 1:
            return t.values[0].value & 0xFFFFFFFFFFFFFFFF
        raise ELFError(f"{self.what}: map {map_name!r}: field {field_name!r} must be __uint() or __ulong()")

    def _map_type_size(self, map_name: str, field_name: str, tid: int) -> tuple[int, int]:
        btf = self.btf
        assert btf is not None
        t = btf.type(tid)
        if t.kind != Kind.PTR:
            raise ELFError(f"{self.what}: map {map_name!r}: {field_name} must be __type(), got {t.kind.name}")
        try:
            return t.type, btf.size_of(t.type)
        except BTFError as e:
            raise ELFError(f"{self.what}: map {map_name!r}: cannot size the {field_name} type: {e}") from None

    def _parse_map_def(self, name: str, tid: int, *, inner_allowed: bool) -> MapSpec:
        btf = self.btf
        assert btf is not None
        d = btf.resolve(tid)
        if d.kind != Kind.STRUCT:
            raise ELFError(f"{self.what}: map {name!r} must be a struct, is {d.kind.name}")
        m = MapSpec(name=name, type=MapType.UNSPEC)

        def set_size(attr: str, v: int, what: str) -> None:
            old = getattr(m, attr)
            if old and old != v:
                raise ELFError(f"{self.what}: map {name!r}: conflicting {what} {old} != {v}")
            setattr(m, attr, v)

        for i, mem in enumerate(d.members):
            f = mem.name
            if f == "type":
                m.type = self._map_int(name, f, mem.type)
            elif f == "max_entries":
                m.max_entries = self._map_int(name, f, mem.type)
            elif f == "map_flags":
                m.flags = self._map_int(name, f, mem.type)
            elif f == "numa_node":
                m.numa_node = self._map_int(name, f, mem.type)
            elif f == "key_size":
                set_size("key_size", self._map_int(name, f, mem.type), "key size")
            elif f == "key":
                m.key_type_id, sz = self._map_type_size(name, "key", mem.type)
                set_size("key_size", sz, "key size")
            elif f == "value_size":
                set_size("value_size", self._map_int(name, f, mem.type), "value size")
            elif f == "value":
                m.value_type_id, sz = self._map_type_size(name, "value", mem.type)
                set_size("value_size", sz, "value size")
            elif f == "values":
                if not inner_allowed:
                    raise ELFError(f"{self.what}: map {name!r}: multi-level inner maps are not supported")
                if i != len(d.members) - 1:
                    raise ELFError(f"{self.what}: map {name!r}: 'values' must be the last field")
                is_mim = m.type in _MAP_IN_MAP
                if not is_mim and m.type != MapType.PROG_ARRAY:
                    raise ELFError(f"{self.what}: map {name!r}: 'values' needs a map-in-map or prog-array type")
                set_size("value_size", 4, "value size")
                arr = btf.type(mem.type)
                if arr.kind != Kind.ARRAY or arr.nelems:
                    raise ELFError(f"{self.what}: map {name!r}: 'values' must be a zero-sized array (__array())")
                ptr = btf.resolve(arr.type)
                if ptr.kind != Kind.PTR:
                    raise ELFError(f"{self.what}: map {name!r}: 'values' elements must be pointers")
                target = btf.resolve(ptr.type)
                if is_mim:
                    if target.kind != Kind.STRUCT:
                        raise ELFError(f"{self.what}: map {name!r}: inner map definition must be a struct")
                    m.inner = self._parse_map_def(f"{name}.inner", btf.skip_mods(ptr.type), inner_allowed=False)
                elif target.kind != Kind.FUNC_PROTO:
                    raise ELFError(f"{self.what}: map {name!r}: prog-array values must be function pointers")
            elif f == "pinning":
                if not inner_allowed:
                    raise ELFError(f"{self.what}: map {name!r}: an inner map cannot be pinned")
                v = self._map_int(name, f, mem.type)
                if v not in (0, 1):
                    raise ELFError(f"{self.what}: map {name!r}: invalid pinning {v} (0: none, 1: by name)")
                m.pinning = v
            elif f == "map_extra":
                m.map_extra = self._map_long(name, f, mem.type)
            else:
                raise ELFError(f"{self.what}: map {name!r}: unknown field {f!r}")
        if m.type == MapType.UNSPEC:
            raise ELFError(f"{self.what}: map {name!r}: map type isn't specified (__uint(type, ...))")
        return m

    def _map_init_slots(self) -> None:
        """``.rel.maps``: static initial contents of map-in-map and prog-array maps."""
        rel = self.maps_rel
        assert rel is not None and self.btf is not None
        btf = self.btf
        # map variables sorted by offset, found by bisection: a scan per relocation is
        # relocations x maps, which a hostile object makes ~10^9
        ranges = sorted(self.map_ranges, key=lambda r: r[0])
        starts = [r[0] for r in ranges]
        for r_offset, r_info in _REL.iter_unpack(rel.data):
            sym = self._sym(r_info >> 32, rel.name)
            i = bisect_right(starts, r_offset) - 1
            if i < 0 or r_offset + 8 > ranges[i][1]:
                raise ELFError(f"{self.what}: .maps relocation at {r_offset} against {sym.name!r} is outside every map")
            start, _end, m, var_type = ranges[i]
            is_mim = m.type in _MAP_IN_MAP
            if is_mim:
                if self.maps_sec is None or sym.shndx != self.maps_sec.index:
                    raise ELFError(f"{self.what}: map {m.name!r}: slot value {sym.name!r} is not a BTF-defined map")
                if m.type == MapType.HASH_OF_MAPS and m.key_size != 4:
                    raise ELFError(f"{self.what}: hash-of-maps {m.name!r} with initial values needs a 4-byte key")
            elif m.type == MapType.PROG_ARRAY:
                es = self.exec.get(sym.shndx)
                f = es.function_at(sym.value // INSN_SIZE) if es is not None else None
                if f is None or not isinstance(f, ProgramSpec) or f.offset * INSN_SIZE != sym.value:
                    raise ELFError(f"{self.what}: map {m.name!r}: slot value {sym.name!r} is not an entry-point program")
            else:
                raise ELFError(f"{self.what}: map {m.name!r} of type {m.type} cannot have initial values")
            d = btf.resolve(var_type)
            last = d.members[-1] if d.members else None
            if last is None or last.name != "values":
                raise ELFError(f"{self.what}: map {m.name!r}: initial values without a 'values' field")
            moff = r_offset - start - last.bit_offset // 8
            if moff < 0 or moff % 8:
                raise ELFError(f"{self.what}: map {m.name!r}: misaligned initial value for {sym.name!r}")
            m.init_slots[moff // 8] = sym.name

    # -- relocations (bpf_program__record_reloc) --

    def _sym(self, idx: int, where: str) -> _Sym:
        if idx >= len(self.syms):
            raise ELFError(f"{self.what}: relocation in {where!r} names symbol #{idx}, past the symbol table")
        return self.syms[idx]

    def collect_relocations(self) -> None:
        sections = self.sections
        maps_idx = self.maps_sec.index if self.maps_sec is not None else -1
        for rel in self.rels:
            es = self.exec.get(rel.info)
            if es is None:
                continue  # relocations of an empty code section
            for r_offset, r_info in _REL.iter_unpack(rel.data):
                if r_offset % INSN_SIZE or r_offset >= es.sec.size:
                    raise ELFError(f"{self.what}: relocation offset {r_offset:#x} in {rel.name!r} is invalid")
                idx = r_offset // INSN_SIZE
                f = es.function_at(idx)
                if f is None:
                    continue  # code outside any function symbol (an overridden weak function)
                sym = self._sym(r_info >> 32, rel.name)
                insn = es.insns[idx]
                li = idx - f.offset

                def fail(msg: str, _f: FunctionSpec = f, _i: int = li) -> RelocationError:
                    return RelocationError(f"{self.what}: program {_f.name!r} insn {_i}: {msg}")

                if insn.code != CALL and insn.code != LD_IMM64:
                    raise fail(f"relocation against {sym.name!r} on instruction {insn.code:#04x}, not a call or ldimm64")
                if sym.is_extern:
                    ext = self.extern_by_sym.get(sym.index)
                    if ext is None:
                        raise fail(f"extern {sym.name!r} is unknown")
                    kind = RelocKind.EXTERN_CALL if insn.code == CALL else RelocKind.EXTERN_VAR
                    f.relocations.append(Relocation(li, kind, ext.name))
                    continue
                shndx = sym.shndx
                if shndx == SHN_UNDEF or shndx >= SHN_LORESERVE or shndx >= len(sections):
                    raise fail(
                        f"relocation against {sym.name!r} in special section {shndx:#x}; "
                        f"an uninitialized global or an undefined symbol?"
                    )
                target = sections[shndx]
                tes = self.exec.get(shndx)
                if insn.code == CALL:
                    if insn.src != BPF_PSEUDO_CALL:
                        raise fail(f"relocated call to {sym.name!r} is not a BPF-to-BPF call (src_reg {insn.src})")
                    if tes is None or sym.value % INSN_SIZE:
                        raise fail(f"call to {sym.name!r} in non-code section {target.name!r}")
                    # global callee: symbol at the function, imm = -1; static callee: the
                    # section symbol, imm = the function's insn index - 1
                    callee = sym.value // INSN_SIZE + insn.imm + 1
                    f.relocations.append(self._code_ref(fail, RelocKind.CALL, li, tes, callee))
                elif tes is not None:
                    if sym.value % INSN_SIZE or insn.imm % INSN_SIZE:
                        raise fail(f"function address of {sym.name!r} is not instruction aligned")
                    callee = (sym.value + insn.imm) // INSN_SIZE
                    f.relocations.append(self._code_ref(fail, RelocKind.SUBPROG_ADDR, li, tes, callee))
                elif shndx == maps_idx:
                    m = self.map_at.get(sym.value)
                    if m is None:
                        raise fail(f"no map at offset {sym.value} of .maps for {sym.name!r}")
                    f.relocations.append(Relocation(li, RelocKind.MAP, m.name))
                elif shndx in self.data_secs:
                    # libbpf: map value offset = the symbol's offset + the addend clang put in imm
                    off = sym.value + insn.imm
                    f.relocations.append(Relocation(li, RelocKind.DATA, sym.name, target.name, off))
                else:
                    raise fail(f"relocation against {sym.name!r} in section {target.name!r}, which is not code, map or data")
        # Calls inside one section need no relocation record; record them too.
        for es in self.exec.values():
            for f in es.funcs:
                have = {r.insn for r in f.relocations}
                for i, insn in enumerate(f.insns):
                    if insn.code == CALL and insn.src == BPF_PSEUDO_CALL and i not in have:
                        callee = f.offset + i + insn.imm + 1

                        def fail(msg: str, _f: FunctionSpec = f, _i: int = i) -> RelocationError:
                            return RelocationError(f"{self.what}: program {_f.name!r} insn {_i}: {msg}")

                        f.relocations.append(self._code_ref(fail, RelocKind.CALL, i, es, callee))
                    elif insn.code == LD_IMM64 and insn.src == BPF_PSEUDO_FUNC and i not in have:
                        raise RelocationError(
                            f"{self.what}: program {f.name!r} insn {i}: function address without a relocation"
                        )
                f.relocations.sort(key=lambda r: r.insn)

    def _code_ref(self, fail: Callable[[str], RelocationError], kind: RelocKind, li: int, tes: _ExecSection, callee: int) -> Relocation:
        g = tes.function_at(callee)
        if g is None or g.offset != callee:
            raise fail(f"{kind.value} target insn {callee} of section {tes.sec.name!r} is not the start of a function")
        return Relocation(li, kind, g.name, tes.sec.name, callee)

    # -- assembly --

    def build(self) -> ObjectSpec:
        self.collect()
        self.collect_functions()
        # The fixed BTF keeps ids and the string table prefix, so the BTF.ext parsed
        # against the original stays valid against it.
        self.fix_btf()
        self.split_btf_ext()
        maps = self.parse_maps()
        self.collect_relocations()
        programs: dict[str, ProgramSpec] = {}
        functions: dict[tuple[str, int], FunctionSpec] = {}
        for idx in sorted(self.exec):
            for f in self.exec[idx].funcs:
                functions[f.key] = f
                if isinstance(f, ProgramSpec):
                    if f.name in programs:
                        raise ELFError(f"{self.what}: two programs named {f.name!r}")
                    programs[f.name] = f
        sections = {s.name: (bytes(s.size) if s.type == SHT_NOBITS else s.data) for s in self.data_secs.values()}
        return ObjectSpec(
            name=self.name,
            btf=self.btf,
            btf_ext=self.btf_ext,
            license=self.license,
            kern_version=self.kern_version,
            programs=programs,
            functions=functions,
            maps=maps,
            externs=self.externs,
            sections=sections,
        )


def _kconfig_type_ok(btf: BTF, tid: int) -> bool:
    """libbpf's supported ``__kconfig`` types: bool, char, 1/2/4/8-byte ints, tristate, char arrays."""
    t = btf.resolve(tid)
    if t.kind == Kind.INT:
        if t.encoding & INT_BOOL:
            return t.size == 1
        return t.size in (1, 2, 4, 8)
    if t.kind == Kind.ENUM:
        return t.size == 4 and t.name == "libbpf_tristate"
    if t.kind == Kind.ENUM64:
        return t.name == "libbpf_tristate"
    if t.kind == Kind.ARRAY:
        if not t.nelems:
            return False
        e = btf.resolve(t.type)
        return e.kind == Kind.INT and e.size == 1 and not (e.encoding & INT_BOOL)
    return False


def load_spec(src: str | os.PathLike[str] | bytes, *, name: str | None = None) -> ObjectSpec:
    """Read a BPF ELF object (path or bytes) into an :class:`ObjectSpec`.

    ``name`` is the object name used for internal map names; by default the file name up
    to its first dot (``opensnoop.bpf.o`` -> ``opensnoop``), or ``"obj"`` for bytes.
    Raises :class:`ELFError`, :class:`BTFError`, :class:`SectionError` or
    :class:`RelocationError` for objects tracekit cannot use, with the reason.
    """
    if isinstance(src, (bytes, bytearray, memoryview)):
        data = bytes(src)
        what = name or "BPF object"
        obj = name or "obj"
    else:
        path = os.fspath(src)
        try:
            # O_NONBLOCK: a FIFO at the path must not block open(); only regular files are
            # read (a FIFO or /dev/zero would hang or grow without bound)
            with open(os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC), "rb") as fh:
                if not stat.S_ISREG(os.fstat(fh.fileno()).st_mode):
                    raise ELFError(f"BPF object {path!r} is not a regular file; pass the path of a .o")
                data = fh.read()
        except OSError as e:
            if e.errno in RESOURCE_ERRNOS:  # out of fds or memory: a limit, not a bad object
                raise error_for_errno(f"read BPF object {path!r}", e.errno) from None
            raise ELFError(f"cannot read BPF object {path!r}: {e.strerror}") from e
        what = path
        obj = name or object_name(path)
    try:
        return _Reader(data, obj, what).build()
    except (struct.error, IndexError, ValueError) as e:
        # bounds the explicit checks did not foresee: still a malformed file, not a crash
        raise ELFError(f"{what}: malformed BPF object: {e}") from None
