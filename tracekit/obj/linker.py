"""Static linker: several relocatable BPF objects in, one relocatable BPF object out.

The algorithm follows libbpf's ``linker.c`` (what ``bpftool gen object`` runs), written
from scratch over our own ELF reading and writing:

1. **Sections** of the same name are concatenated in input order, each input's part
   aligned to its ``sh_addralign``.  ``license`` and ``version`` must agree and are
   kept once.  DWARF, ``.llvm_addrsig``, string and symbol tables are dropped (the
   output gets its own).
2. **Symbols**: locals are copied with their values shifted by the part's offset; one
   ``STT_SECTION`` symbol per output section.  Globals are resolved by name: two strong
   definitions conflict; a strong definition replaces a weak one or an extern; an
   extern binds to whichever definition exists (in any order); hidden visibility is
   contagious.  Definitions and externs must agree in kind (function or variable) and
   BTF type (a FWD declaration matches the full struct); maps in ``.maps`` must have
   identical definitions.  Externs nobody defines stay undefined: kfuncs, ``__ksym`` and
   ``__kconfig`` are resolved against the kernel at load time.
3. **Relocations** are copied with offsets shifted and symbols remapped.  Relocations
   against a *section* symbol carry their target offset in the instruction itself, so
   that immediate is shifted by where the target section's part landed.
4. **BTF**: every input's types are appended with ids and strings remapped; extern
   VARs/FUNCs that got resolved are folded into their definition's type, and the
   DATASECs are rebuilt per output section with real offsets and sizes (the loader still
   accepts them as is).  An extern FUNC's prototype takes the definition's parameter
   names (clang leaves them out) so it can collapse into the definition's; the VARs of a
   second ``license``/``version`` are dropped with its bytes.  The merged BTF is then
   deduplicated (:mod:`tracekit.btf.dedup`, libbpf's ``btf__dedup`` algorithm), so types
   every input pulls from ``vmlinux.h`` are present once.
5. **BTF.ext**: func_info, line_info and CO-RE records are concatenated per section with
   instruction offsets shifted and type ids (through the dedup id map) / string offsets
   remapped.

Pure: bytes in, bytes out, no syscalls.  Errors are :class:`~tracekit.errors.LinkerError`
and name the input objects involved.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tracekit.btf.dedup import dedup_types
from tracekit.btf.ext import (
    BTF_EXT_MAGIC,
    CORE_RELO_SIZE,
    FUNC_INFO_SIZE,
    LINE_INFO_SIZE,
    BTFExt,
)
from tracekit.btf.reader import BTF, MAX_CHAIN
from tracekit.btf.types import (
    LINKAGE_EXTERN,
    LINKAGE_STATIC,
    Kind,
    Member,
    Param,
    Type,
    VarSecinfo,
)
from tracekit.btf.writer import BTFBuilder
from tracekit.errors import BTFError, LinkerError

__all__ = ["Linker", "link", "link_files"]

# --- ELF constants (see elf.py; repeated so the linker does not depend on its internals) ---

EM_BPF = 247
ET_REL = 1
SHT_NULL, SHT_PROGBITS, SHT_SYMTAB, SHT_STRTAB, SHT_NOBITS, SHT_REL = 0, 1, 2, 3, 8, 9
SHT_LLVM_ADDRSIG = 0x6FFF4C03
SHF_EXECINSTR = 0x4
STB_LOCAL, STB_GLOBAL, STB_WEAK = 0, 1, 2
STT_NOTYPE, STT_OBJECT, STT_FUNC, STT_SECTION, STT_FILE = 0, 1, 2, 3, 4
STV_DEFAULT, STV_HIDDEN = 0, 2
SHN_UNDEF, SHN_LORESERVE, SHN_ABS, SHN_COMMON = 0, 0xFF00, 0xFFF1, 0xFFF2
BPF_JMP_CALL = 0x85
INSN_SIZE = 8

_EHDR = struct.Struct("<16sHHIQQQIHHHHHH")
_SHDR = struct.Struct("<IIQQQQIIQQ")
_SYM = struct.Struct("<IBBHQQ")
_REL = struct.Struct("<QQ")

# DATASECs that describe externs, not bytes of an ELF section
_EXTERN_DATASECS = (".ksyms", ".kconfig", ".extern")
_MODS = (Kind.CONST, Kind.VOLATILE, Kind.RESTRICT, Kind.TYPE_TAG)


# --- reading one input ---------------------------------------------------------------


@dataclass(slots=True)
class _InSec:
    index: int
    name: str
    type: int
    flags: int
    size: int
    link: int
    info: int
    align: int
    entsize: int
    data: bytes
    out: _OutSec | None = None
    dst_off: int = 0  # where this part starts inside ``out``
    deduped: bool = False  # a second ``license``/``version``: its bytes and symbols are dropped


@dataclass(slots=True)
class _InSym:
    name: str
    value: int
    size: int
    bind: int
    type: int
    other: int
    shndx: int

    @property
    def vis(self) -> int:
        return self.other & 3


@dataclass(slots=True)
class _Input:
    name: str
    secs: list[_InSec]
    syms: list[_InSym]
    btf: BTF | None
    ext: BTFExt | None
    sym_map: list[_OutSym | None] = field(default_factory=list)
    type_map: list[int] = field(default_factory=list)  # input type id -> output type id
    funcs: dict[str, int] = field(default_factory=dict)  # global/extern FUNC name -> type id
    vars: dict[str, tuple[int, str]] = field(default_factory=dict)  # global/extern VAR -> (id, DATASEC)


def _cstr(tbl: bytes, off: int, what: str) -> str:
    end = tbl.find(b"\0", off)
    if off >= len(tbl) or end < 0:
        raise LinkerError(f"{what}: string offset {off} is outside its string table")
    return tbl[off:end].decode("utf-8", "replace")


def _read_input(data: bytes, name: str) -> _Input:
    what = f"link input {name!r}"
    if len(data) < _EHDR.size or data[:4] != b"\x7fELF":
        raise LinkerError(f"{what}: not an ELF file; expected a clang -target bpf object (.bpf.o)")
    if data[4] != 2 or data[5] != 1:
        raise LinkerError(f"{what}: not a 64-bit little-endian ELF (build with clang -target bpf)")
    (_, e_type, e_machine, *_rest) = _EHDR.unpack_from(data, 0)
    e_shoff, e_shentsize, e_shnum, e_shstrndx = _rest[3], _rest[8], _rest[9], _rest[10]
    if e_machine != EM_BPF:
        raise LinkerError(f"{what}: ELF machine {e_machine} is not BPF ({EM_BPF})")
    if e_type != ET_REL:
        raise LinkerError(f"{what}: ELF type {e_type} is not a relocatable object (ET_REL)")
    if e_shentsize != _SHDR.size or e_shoff + e_shnum * _SHDR.size > len(data) or not 0 < e_shstrndx < e_shnum:
        raise LinkerError(f"{what}: malformed or truncated section header table")
    raw = [_SHDR.unpack_from(data, e_shoff + i * _SHDR.size) for i in range(e_shnum)]
    so, ss = raw[e_shstrndx][4], raw[e_shstrndx][5]
    shstr = data[so : so + ss]
    secs: list[_InSec] = []
    symtab: _InSec | None = None
    for i, (nm, typ, flags, _addr, off, size, link_, info, align, entsize) in enumerate(raw):
        if i and typ != SHT_NOBITS and off + size > len(data):
            raise LinkerError(f"{what}: section #{i} runs past the end of the file (truncated?)")
        body = b"" if typ in (SHT_NOBITS, SHT_NULL) else data[off : off + size]
        s = _InSec(i, _cstr(shstr, nm, what) if i else "", typ, flags, size, link_, info, max(align, 1), entsize, body)
        secs.append(s)
        if typ == SHT_SYMTAB:
            if symtab is not None:
                raise LinkerError(f"{what}: more than one symbol table")
            symtab = s
    if symtab is None or symtab.entsize != _SYM.size or not 0 < symtab.link < len(secs):
        raise LinkerError(f"{what}: no usable symbol table (was the object stripped?)")
    strtab = secs[symtab.link].data
    syms = []
    for st_name, st_info, st_other, shndx, value, size in _SYM.iter_unpack(symtab.data):
        if shndx >= len(secs) and shndx < SHN_LORESERVE:
            raise LinkerError(f"{what}: symbol refers to missing section #{shndx}")
        syms.append(_InSym(_cstr(strtab, st_name, what) if st_name else "", value, size, st_info >> 4, st_info & 0xF, st_other, shndx))
    btf = ext = None
    for s in secs:
        if s.name == ".BTF":
            try:
                btf = BTF(s.data, name=f"{name}.BTF")
            except BTFError as e:
                raise LinkerError(f"{what}: {e}") from None
    if btf is not None:
        for s in secs:
            if s.name == ".BTF.ext":
                try:
                    ext = BTFExt.parse(s.data, btf)
                except BTFError as e:
                    raise LinkerError(f"{what}: {e}") from None
    return _Input(name, secs, syms, btf, ext)


# --- the output ------------------------------------------------------------------------


@dataclass(eq=False)
class _OutSec:
    name: str
    type: int
    flags: int
    entsize: int
    align: int = 1
    size: int = 0
    data: bytearray = field(default_factory=bytearray)
    rels: list[tuple[int, _OutSym, int]] = field(default_factory=list)  # (offset, symbol, r_type)
    sym: _OutSym | None = None
    index: int = 0
    first_input: str = ""


@dataclass(eq=False)
class _OutSym:
    name: str
    value: int
    size: int
    bind: int
    type: int
    vis: int
    sec: _OutSec | None  # None: undefined (or absolute with ``abs_shndx``)
    abs_shndx: int = SHN_UNDEF
    index: int = 0


@dataclass(eq=False)
class _Global:
    """Resolution state of one global name."""

    sym: _OutSym
    is_extern: bool
    is_weak: bool
    owner: int  # input index of the definition (or of the first extern)
    btf_kind: Kind | None  # FUNC or VAR (None: no BTF found)
    btf_id: int  # in the owner's BTF
    btf_sec: str  # DATASEC name holding the VAR ("" for functions)
    where: str  # input name of the winning definition/extern, for messages


def _align(n: int, a: int) -> int:
    return (n + a - 1) // a * a


class Linker:
    """Accumulate inputs with :meth:`add`, then :meth:`finalize` into ELF bytes.

    ::

        ln = Linker()
        ln.add("main.bpf.o")
        ln.add(lib_bytes, name="lib.bpf.o")
        out = ln.finalize()
    """

    def __init__(self, *, dedup: bool = True) -> None:
        """``dedup=False`` keeps every input's types as appended (ids stay input-ordered)."""
        self._dedup = dedup
        self._inputs: list[_Input] = []
        self._secs: dict[str, _OutSec] = {}
        self._locals: list[_OutSym] = []
        self._globals: dict[str, _Global] = {}
        self._finalized = False

    # --- input ----------------------------------------------------------------------------

    def add(self, src: str | os.PathLike[str] | bytes, *, name: str | None = None) -> None:
        """Add one relocatable BPF object (a path or ELF bytes)."""
        if self._finalized:
            raise LinkerError("Linker.add(): the linker was already finalized")
        if isinstance(src, (bytes, bytearray, memoryview)):
            data = bytes(src)
            name = name or f"<input #{len(self._inputs) + 1}>"
        else:
            p = Path(os.fspath(src))
            try:
                data = p.read_bytes()
            except OSError as e:
                raise LinkerError(f"cannot read link input {str(p)!r}: {e.strerror}") from None
            name = name or p.name
        inp = _read_input(data, name)
        if inp.btf is None:
            raise LinkerError(f"link input {name!r} has no .BTF section: compile it with clang -g")
        self._inputs.append(inp)
        idx = len(self._inputs) - 1
        self._append_sections(inp)
        self._btf_index(inp)
        self._append_symbols(inp, idx)

    def _append_sections(self, inp: _Input) -> None:
        for s in inp.secs:
            if s.index == 0 or self._ignored(s):
                continue
            if s.type not in (SHT_PROGBITS, SHT_NOBITS):
                if s.type == SHT_REL or s.type == SHT_SYMTAB:
                    continue
                raise LinkerError(f"{inp.name}: section {s.name!r} has unsupported type {s.type:#x}")
            out = self._secs.get(s.name)
            if out is None:
                out = _OutSec(s.name, s.type, s.flags, s.entsize, first_input=inp.name)
                self._secs[s.name] = out
            elif out.type != s.type or (out.flags & ~0x3) != (s.flags & ~0x3) or out.entsize != s.entsize:
                raise LinkerError(
                    f"section {s.name!r} has different types or flags in {out.first_input!r} and {inp.name!r}"
                )
            if s.name in ("license", "version") and out.size:
                have, got = bytes(out.data).rstrip(b"\0"), s.data.rstrip(b"\0")
                if have != got:
                    raise LinkerError(
                        f"{s.name!r} differs: {have.decode(errors='replace')!r} in {out.first_input!r} "
                        f"but {got.decode(errors='replace')!r} in {inp.name!r}"
                    )
                s.out, s.dst_off, s.deduped = out, 0, True
                continue
            if s.flags & SHF_EXECINSTR and s.size % INSN_SIZE:
                raise LinkerError(f"{inp.name}: code section {s.name!r} size {s.size} is not a multiple of 8")
            off = _align(out.size, s.align)
            out.align = max(out.align, s.align)
            if s.type != SHT_NOBITS:
                out.data += bytes(off - len(out.data))
                out.data += s.data
            out.size = off + s.size
            s.out, s.dst_off = out, off

    @staticmethod
    def _ignored(s: _InSec) -> bool:
        n = s.name
        if s.type in (SHT_STRTAB, SHT_LLVM_ADDRSIG, SHT_NULL):
            return True
        if n in (".BTF", ".BTF.ext") or n.startswith(".debug") or n == ".llvm_addrsig":
            return True
        if n == ".text" and s.size == 0:
            return True
        return False

    # BTF look-ups for global symbols: name -> (kind, type id, DATASEC name)
    def _btf_index(self, inp: _Input) -> None:
        btf = inp.btf
        assert btf is not None
        funcs: dict[str, int] = {}
        vars_: dict[str, tuple[int, str]] = {}
        loose: dict[str, int] = {}  # extern VARs clang puts in no DATASEC
        for tid, t in btf.types():
            if t.kind == Kind.FUNC and t.linkage != LINKAGE_STATIC:
                funcs.setdefault(t.name, tid)
            elif t.kind == Kind.VAR and t.linkage != LINKAGE_STATIC:
                loose.setdefault(t.name, tid)
            elif t.kind == Kind.DATASEC:
                for si in t.secinfos:
                    v = btf.type(si.type)
                    if v.kind == Kind.VAR and v.linkage != LINKAGE_STATIC:
                        vars_.setdefault(v.name, (si.type, t.name))
                    elif v.kind == Kind.FUNC:
                        funcs.setdefault(v.name, si.type)
        for n, tid in loose.items():
            vars_.setdefault(n, (tid, ""))
        inp.funcs = funcs
        inp.vars = vars_

    def _btf_of(self, inp: _Input, sym: _InSym) -> tuple[Kind | None, int, str]:
        v = inp.vars.get(sym.name)
        f = inp.funcs.get(sym.name)
        if sym.type == STT_FUNC and f is not None:
            return Kind.FUNC, f, ""
        if sym.type == STT_OBJECT and v is not None:
            return Kind.VAR, v[0], v[1]
        if v is not None:
            return Kind.VAR, v[0], v[1]
        if f is not None:
            return Kind.FUNC, f, ""
        return None, 0, ""

    def _append_symbols(self, inp: _Input, idx: int) -> None:
        inp.sym_map = [None] * len(inp.syms)
        for i, sym in enumerate(inp.syms):
            if i == 0 or sym.type == STT_FILE:
                continue
            sec: _InSec | None = None
            if SHN_UNDEF < sym.shndx < SHN_LORESERVE:
                sec = inp.secs[sym.shndx]
                if sec.out is None or (sec.deduped and sym.type != STT_SECTION):
                    continue  # a symbol of a dropped section (DWARF, a second license, ...)
            if sym.type == STT_SECTION:
                if sec is None:
                    continue
                out = sec.out
                assert out is not None
                if out.sym is None:
                    out.sym = _OutSym(out.name, 0, 0, STB_LOCAL, STT_SECTION, STV_DEFAULT, out)
                inp.sym_map[i] = out.sym
                continue
            if sym.bind == STB_LOCAL:
                o = _OutSym(sym.name, (sec.dst_off if sec else 0) + sym.value, sym.size, STB_LOCAL, sym.type, sym.vis,
                            sec.out if sec else None, sym.shndx if sec is None else SHN_UNDEF)
                self._locals.append(o)
                inp.sym_map[i] = o
                continue
            if sym.bind not in (STB_GLOBAL, STB_WEAK):
                raise LinkerError(f"{inp.name}: symbol {sym.name!r} has unsupported binding {sym.bind}")
            if sym.vis not in (STV_DEFAULT, STV_HIDDEN):
                raise LinkerError(f"{inp.name}: symbol {sym.name!r} has unsupported visibility {sym.vis}")
            if sym.shndx >= SHN_LORESERVE:
                raise LinkerError(f"{inp.name}: global symbol {sym.name!r} has special section index {sym.shndx:#x}")
            inp.sym_map[i] = self._resolve(inp, idx, sym, sec)

    def _resolve(self, inp: _Input, idx: int, sym: _InSym, sec: _InSec | None) -> _OutSym:
        is_extern = sec is None
        kind, tid, dsec = self._btf_of(inp, sym)
        if is_extern and kind is None:
            raise LinkerError(f"{inp.name}: extern {sym.name!r} has no BTF description (compile with clang -g)")
        g = self._globals.get(sym.name)
        if g is None:
            o = _OutSym(sym.name, (sec.dst_off + sym.value) if sec else 0, sym.size, sym.bind, sym.type, sym.vis,
                        sec.out if sec else None)
            self._globals[sym.name] = _Global(o, is_extern, sym.bind == STB_WEAK, idx, kind, tid, dsec, inp.name)
            return o
        what_new = f"{'weak ' if sym.bind == STB_WEAK else ''}{'extern declaration' if is_extern else 'definition'}"
        what_old = f"{'weak ' if g.is_weak else ''}{'extern declaration' if g.is_extern else 'definition'}"
        if not is_extern and not g.is_extern and not g.is_weak and sym.bind != STB_WEAK:
            raise LinkerError(
                f"conflicting definitions of global symbol {sym.name!r}: strong definitions in both "
                f"{g.where!r} and {inp.name!r} (mark one __weak, or make one static)"
            )
        self._check_match(sym.name, g, what_old, inp, kind, tid, dsec, what_new)
        o = g.sym
        if sym.bind == STB_GLOBAL:
            o.bind = STB_GLOBAL
        if sym.vis > o.vis:  # hidden is contagious
            o.vis = sym.vis
        if is_extern:
            return o
        if not g.is_extern and sym.bind == STB_WEAK:
            return o  # an existing definition wins over a new weak one
        # a strong definition, or the first definition after externs: it takes over
        assert sec is not None and sec.out is not None
        o.type = sym.type
        o.sec = sec.out
        o.value = sec.dst_off + sym.value
        o.size = sym.size
        g.is_extern = False
        g.is_weak = sym.bind == STB_WEAK
        g.owner, g.btf_kind, g.btf_id, g.btf_sec, g.where = idx, kind, tid, dsec, inp.name
        return o

    def _check_match(self, name: str, g: _Global, what_old: str, inp: _Input, kind: Kind | None, tid: int,
                     dsec: str, what_new: str) -> None:
        if g.btf_kind is None or kind is None:
            return
        old_btf = self._inputs[g.owner].btf
        assert old_btf is not None and inp.btf is not None
        if g.btf_kind != kind:
            kinds = {Kind.FUNC: "a function", Kind.VAR: "a variable"}
            raise LinkerError(
                f"global symbol {name!r} is {kinds[g.btf_kind]} in {g.where!r} ({what_old}) "
                f"but {kinds[kind]} in {inp.name!r} ({what_new})"
            )
        a, b = old_btf.type(g.btf_id), inp.btf.type(tid)
        if (kind == Kind.VAR and g.btf_sec and dsec and g.btf_sec not in _EXTERN_DATASECS
                and dsec not in _EXTERN_DATASECS and g.btf_sec != dsec):
            raise LinkerError(
                f"global variable {name!r} is in section {g.btf_sec!r} in {g.where!r} but in {dsec!r} in {inp.name!r}"
            )
        why = _TypeMatcher(old_btf, inp.btf).mismatch(a.type, b.type, top_proto=kind == Kind.FUNC)
        if why:
            desc_a, desc_b = old_btf.describe(a.type), inp.btf.describe(b.type)
            what = "prototype" if kind == Kind.FUNC else ("map definition" if dsec == ".maps" else "type")
            raise LinkerError(
                f"global {'function' if kind == Kind.FUNC else 'variable'} {name!r} has a different {what} in "
                f"{g.where!r} ({desc_a}) and {inp.name!r} ({desc_b}): {why}"
            )

    # --- output ---------------------------------------------------------------------------

    def finalize(self) -> bytes:
        """The linked object as ELF bytes."""
        if not self._inputs:
            raise LinkerError("nothing to link: no input objects")
        self._finalized = True
        self._append_relocations()
        builder, datasec_ids = self._link_btf()
        self._fill_datasecs(builder, datasec_ids)
        if self._dedup:
            # As libbpf's linker: deduplicate once everything is merged, then build
            # .BTF.ext (type ids, access strings, line strings, section names) against the
            # deduplicated BTF through the composed id map.
            res = dedup_types(builder.types)
            idm = res.id_map
            for inp in self._inputs:
                inp.type_map = [idm[t] for t in inp.type_map]
            builder = res.builder()
        ext = self._link_btf_ext(builder)
        return self._write(builder.encode(), ext)

    def _append_relocations(self) -> None:
        for inp in self._inputs:
            for rs in inp.secs:
                if rs.type != SHT_REL:
                    continue
                if not 0 < rs.info < len(inp.secs):
                    raise LinkerError(f"{inp.name}: relocation section {rs.name!r} targets no section")
                target = inp.secs[rs.info]
                if target.out is None or target.name in ("license", "version"):
                    continue  # relocations of dropped sections (DWARF, .BTF, ...)
                if rs.entsize != _REL.size:
                    raise LinkerError(f"{inp.name}: malformed relocation section {rs.name!r}")
                out = target.out
                for r_off, r_info in _REL.iter_unpack(rs.data):
                    si, rtype = r_info >> 32, r_info & 0xFFFFFFFF
                    if si >= len(inp.syms):
                        raise LinkerError(f"{inp.name}: relocation in {rs.name!r} uses missing symbol #{si}")
                    osym = inp.sym_map[si]
                    if osym is None:
                        raise LinkerError(
                            f"{inp.name}: relocation in {rs.name!r} uses symbol {inp.syms[si].name!r} of a dropped section"
                        )
                    off = target.dst_off + r_off
                    src = inp.syms[si]
                    if src.type == STT_SECTION:
                        if not target.flags & SHF_EXECINSTR:
                            raise LinkerError(
                                f"{inp.name}: relocation against a section symbol in non-code section {target.name!r} "
                                "is not supported"
                            )
                        # the target offset is in the instruction: shift it by where that section's part landed
                        shift = inp.secs[src.shndx].dst_off
                        code = out.data[off]
                        imm = struct.unpack_from("<i", out.data, off + 4)[0]
                        imm += shift // INSN_SIZE if code == BPF_JMP_CALL else shift
                        struct.pack_into("<i", out.data, off + 4, imm)
                    out.rels.append((off, osym, rtype))

    # -- BTF --

    def _link_btf(self) -> tuple[BTFBuilder, dict[str, int]]:
        b = BTFBuilder()
        # Which input types are folded into another: resolved externs -> their definition,
        # later externs of an unresolved name -> the first one.  DATASECs are rebuilt.
        folded: dict[tuple[int, int], tuple[int, int]] = {}
        # Extern FUNC_PROTOs get the definition's parameter names (clang leaves an extern's
        # unnamed): (input, FUNC_PROTO id) -> names.  Then dedup sees the two prototypes as
        # the same type instead of keeping the extern's as an unreferenced look-alike.
        proto_names: dict[tuple[int, int], list[str]] = {}
        for idx, inp in enumerate(self._inputs):
            for name, g in self._globals.items():
                kind, tid, _ = self._btf_of(inp, _InSym(name, 0, 0, 0, STT_NOTYPE, 0, 0))
                if kind is None or g.btf_kind is None or idx == g.owner:
                    continue
                # an extern's type becomes its definition's (or the first extern's); a weak
                # definition that lost keeps its type: its dead code still has func_info
                if inp.btf.type(tid).linkage == LINKAGE_EXTERN:  # type: ignore[union-attr]
                    folded[(idx, tid)] = (g.owner, g.btf_id)
                    if kind == Kind.FUNC:
                        self._name_extern_params(idx, tid, g, proto_names)
        # The VARs of a second ``license``/``version`` (whose bytes were dropped) are
        # dropped too, as libbpf does: only that input's DATASEC, rebuilt below, used them.
        dropped: set[tuple[int, int]] = set()
        for idx, inp in enumerate(self._inputs):
            deduped = {s.name for s in inp.secs if s.deduped}
            if not deduped:
                continue
            btf = inp.btf
            assert btf is not None
            for _, t in btf.types():
                if t.kind == Kind.DATASEC and t.name in deduped:
                    dropped.update((idx, si.type) for si in t.secinfos if btf.kind_of(si.type) == Kind.VAR)
        # first pass: output ids of kept types
        next_id = 1
        for idx, inp in enumerate(self._inputs):
            btf = inp.btf
            assert btf is not None
            tm = [0] * len(btf)
            for tid in range(1, len(btf)):
                if (idx, tid) in folded or (idx, tid) in dropped or btf.kind_of(tid) == Kind.DATASEC:
                    continue
                tm[tid] = next_id
                next_id += 1
            inp.type_map = tm
        for (idx, tid), (oidx, otid) in folded.items():
            self._inputs[idx].type_map[tid] = self._inputs[oidx].type_map[otid]
        # second pass: the kept types, with every reference (including to folded externs) remapped
        for idx, inp in enumerate(self._inputs):
            btf = inp.btf
            assert btf is not None
            tm = inp.type_map
            for tid in range(1, len(btf)):
                if not tm[tid] or (idx, tid) in folded or btf.kind_of(tid) == Kind.DATASEC:
                    continue
                t = btf.type(tid)
                nt = _remap(t, tm, f"{inp.name}: BTF type {tid}")
                names = proto_names.get((idx, tid))
                if names is not None:
                    for p, n in zip(nt.params, names):
                        p.name = p.name or n
                b.add_type(nt)
        datasec_ids: dict[str, int] = {}
        return b, datasec_ids

    def _name_extern_params(self, idx: int, func_id: int, g: _Global,
                            proto_names: dict[tuple[int, int], list[str]]) -> None:
        """Record the parameter names of ``g``'s FUNC for the extern FUNC ``func_id`` of input ``idx``."""
        if g.btf_kind != Kind.FUNC:
            return
        owner = self._inputs[g.owner].btf
        btf = self._inputs[idx].btf
        assert owner is not None and btf is not None
        mine = btf.type(btf.type(func_id).type)
        theirs = owner.type(owner.type(g.btf_id).type)
        if mine.kind == Kind.FUNC_PROTO and theirs.kind == Kind.FUNC_PROTO and len(mine.params) == len(theirs.params):
            proto_names[(idx, btf.type(func_id).type)] = [p.name for p in theirs.params]

    def _fill_datasecs(self, b: BTFBuilder, datasec_ids: dict[str, int]) -> None:
        """One DATASEC per output section that had one in some input, plus the extern ones."""
        infos: dict[str, list[VarSecinfo]] = {}
        seen_extern: set[str] = set()
        for idx, inp in enumerate(self._inputs):
            btf = inp.btf
            assert btf is not None
            obj_syms: dict[tuple[int, str], _InSym] = {}
            for s in inp.syms:
                if s.type in (STT_OBJECT, STT_NOTYPE) and 0 < s.shndx < SHN_LORESERVE and s.name:
                    obj_syms.setdefault((s.shndx, s.name), s)
            by_name = {s.name: s for s in inp.secs if s.out is not None}
            for _, t in btf.types():
                if t.kind != Kind.DATASEC:
                    continue
                lst = infos.setdefault(t.name, [])
                if t.name in _EXTERN_DATASECS:
                    for si in t.secinfos:
                        v = btf.type(si.type)
                        g = self._globals.get(v.name)
                        if g is not None and not g.is_extern:
                            continue  # defined by some input: not an extern any more
                        if v.name in seen_extern:
                            continue
                        seen_extern.add(v.name)
                        lst.append(VarSecinfo(inp.type_map[si.type], si.offset, si.size))
                    continue
                sec = by_name.get(t.name)
                if sec is None or sec.deduped:
                    continue  # a second license/version: the first input's VARs describe it
                for si in t.secinfos:
                    v = btf.type(si.type)
                    off = si.offset
                    if v.kind == Kind.VAR and v.linkage != LINKAGE_STATIC:
                        g = self._globals.get(v.name)
                        if g is None or g.owner != idx or g.is_extern:
                            continue  # an extern, or a definition that lost to another input's
                    osym = obj_syms.get((sec.index, v.name))
                    if osym is not None:
                        off = osym.value
                    lst.append(VarSecinfo(inp.type_map[si.type], sec.dst_off + off, si.size))
        for name, lst in infos.items():
            out = self._secs.get(name)
            if out is None and not lst:
                continue
            lst.sort(key=lambda s: s.offset)
            size = out.size if out is not None else 0
            datasec_ids[name] = b.add_type(Type(Kind.DATASEC, name=name, size=size, secinfos=lst))

    def _link_btf_ext(self, b: BTFBuilder) -> bytes:
        fi: dict[str, list[tuple[int, int]]] = {}
        li: dict[str, list[tuple[int, int, int, int]]] = {}
        cr: dict[str, list[tuple[int, int, int, int]]] = {}
        for inp in self._inputs:
            ext, btf = inp.ext, inp.btf
            if ext is None or btf is None:
                continue
            shift = {s.name: s.dst_off // INSN_SIZE for s in inp.secs if s.out is not None}
            tm = inp.type_map
            for sec, recs in ext.func_info.items():
                d = shift.get(sec, 0)
                fi.setdefault(sec, []).extend(((r.insn + d) * INSN_SIZE, tm[r.type_id]) for r in recs)
            for sec, lrecs in ext.line_info.items():
                d = shift.get(sec, 0)
                li.setdefault(sec, []).extend(
                    ((r.insn + d) * INSN_SIZE, b.add_string(btf.string(r.file_name_off)),
                     b.add_string(btf.string(r.line_off)), r.line_col) for r in lrecs
                )
            for sec, crecs in ext.core_relos.items():
                d = shift.get(sec, 0)
                cr.setdefault(sec, []).extend(
                    ((r.insn + d) * INSN_SIZE, tm[r.type_id], b.add_string(r.access), r.kind) for r in crecs
                )

        def block(groups: Mapping[str, Sequence[tuple[int, ...]]], rec_size: int, fmt: str) -> bytes:
            if not groups:
                return b""
            out = bytearray(struct.pack("<I", rec_size))
            for sec, recs in groups.items():
                out += struct.pack("<II", b.add_string(sec), len(recs))
                for r in recs:
                    out += struct.pack(fmt, *r)
            return bytes(out)

        fib = block(fi, FUNC_INFO_SIZE, "<II")
        lib_ = block(li, LINE_INFO_SIZE, "<IIII")
        crb = block(cr, CORE_RELO_SIZE, "<IIII")
        if not (fib or lib_ or crb):
            return b""
        hdr_len = 32
        hdr = struct.pack("<HBBIIIIIII", BTF_EXT_MAGIC, 1, 0, hdr_len, 0, len(fib), len(fib), len(lib_),
                          len(fib) + len(lib_), len(crb))
        return hdr + fib + lib_ + crb

    # -- ELF --

    def _write(self, btf: bytes, ext: bytes) -> bytes:
        strtab = bytearray(b"\0")
        str_idx: dict[str, int] = {}

        def s(name: str) -> int:
            if not name:
                return 0
            o = str_idx.get(name)
            if o is None:
                o = len(strtab)
                strtab.extend(name.encode() + b"\0")
                str_idx[name] = o
            return o

        secs = list(self._secs.values())
        # section headers: (name, type, flags, data, size, link, info, align, entsize)
        hdrs: list[list[Any]] = []
        for i, out in enumerate(secs, start=1):
            out.index = i
            data = b"" if out.type == SHT_NOBITS else bytes(out.data)
            hdrs.append([out.name, out.type, out.flags, data, out.size, 0, 0, out.align, out.entsize])
            if out.sym is None:
                out.sym = _OutSym(out.name, 0, 0, STB_LOCAL, STT_SECTION, STV_DEFAULT, out)
        # symbols: null, section symbols, other locals, globals
        syms: list[_OutSym] = [out.sym for out in secs if out.sym is not None]
        syms += self._locals
        n_local = len(syms) + 1
        syms += [g.sym for g in self._globals.values()]
        for i, sym in enumerate(syms, start=1):
            sym.index = i
        n_rel_base = len(secs) + 1
        rel_secs = [out for out in secs if out.rels]
        symtab_index = n_rel_base + len(rel_secs) + (1 if btf else 0) + (1 if ext else 0)
        for out in rel_secs:
            body = b"".join(_REL.pack(off, (sym.index << 32) | rtype) for off, sym, rtype in out.rels)
            hdrs.append([".rel" + out.name, SHT_REL, 0x40, body, len(body), symtab_index, out.index, 8, _REL.size])
        if btf:
            hdrs.append([".BTF", SHT_PROGBITS, 0, btf, len(btf), 0, 0, 4, 0])
        if ext:
            hdrs.append([".BTF.ext", SHT_PROGBITS, 0, ext, len(ext), 0, 0, 4, 0])
        symbody = bytearray(_SYM.pack(0, 0, 0, 0, 0, 0))
        for sym in syms:
            shndx = sym.sec.index if sym.sec is not None else sym.abs_shndx
            name = 0 if sym.type == STT_SECTION else s(sym.name)
            symbody += _SYM.pack(name, (sym.bind << 4) | sym.type, sym.vis, shndx, sym.value, sym.size)
        strtab_index = symtab_index + 1
        hdrs.append([".symtab", SHT_SYMTAB, 0, bytes(symbody), len(symbody), strtab_index, n_local, 8, _SYM.size])
        names = [s(h[0]) for h in hdrs] + [s(".strtab")]
        hdrs.append([".strtab", SHT_STRTAB, 0, None, 0, 0, 0, 1, 0])
        hdrs[-1][3] = bytes(strtab)
        hdrs[-1][4] = len(strtab)
        out_b = bytearray(_EHDR.size)
        offsets = []
        for h in hdrs:
            pos = _align(len(out_b), max(h[7], 1))
            out_b += bytes(pos - len(out_b))
            offsets.append(pos)
            if h[1] != SHT_NOBITS:
                out_b += h[3]
        shoff = _align(len(out_b), 8)
        out_b += bytes(shoff - len(out_b))
        out_b += _SHDR.pack(0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
        for h, nm, pos in zip(hdrs, names, offsets):
            out_b += _SHDR.pack(nm, h[1], h[2], 0, pos, h[4], h[5], h[6], h[7], h[8])
        shnum = len(hdrs) + 1
        ident = b"\x7fELF" + bytes([2, 1, 1, 0]) + bytes(8)
        _EHDR.pack_into(out_b, 0, ident, ET_REL, EM_BPF, 1, 0, 0, shoff, 0, _EHDR.size, 0, 0, _SHDR.size, shnum,
                        shnum - 1)
        return bytes(out_b)


def _remap(t: Type, tm: list[int], what: str) -> Type:
    """A copy of ``t`` whose type references go through ``tm``."""

    def m(tid: int) -> int:
        if tid == 0:
            return 0
        if tid >= len(tm) or not tm[tid]:
            raise LinkerError(f"{what} refers to type {tid}, which the linker dropped or does not exist")
        return tm[tid]

    k = t.kind
    nt = Type(k, name=t.name, size=t.size, kflag=t.kflag, encoding=t.encoding, bits_offset=t.bits_offset,
              bits=t.bits, nelems=t.nelems, linkage=t.linkage, component_idx=t.component_idx)
    if k == Kind.ARRAY:
        nt.type = m(t.type)
        nt.index_type = m(t.index_type)
    elif k in (Kind.PTR, Kind.TYPEDEF, Kind.VOLATILE, Kind.CONST, Kind.RESTRICT, Kind.TYPE_TAG, Kind.FUNC,
               Kind.FUNC_PROTO, Kind.VAR, Kind.DECL_TAG):
        nt.type = m(t.type)
    nt.members = [Member(x.name, m(x.type), x.bit_offset, x.bitfield_size) for x in t.members]
    nt.params = [Param(p.name, m(p.type)) for p in t.params]
    nt.values = list(t.values)
    return nt


class _TypeMatcher:
    """Structural equality of two types in two BTFs (libbpf's glob_sym_btf_matches, simplified).

    Named types must have equal names; a FWD matches a STRUCT/UNION of its name; CONST,
    VOLATILE, RESTRICT and TYPE_TAG are ignored; function parameter names are not compared.
    """

    def __init__(self, a: BTF, b: BTF) -> None:
        self.a, self.b = a, b
        self.seen: set[tuple[int, int]] = set()

    def _skip(self, btf: BTF, tid: int) -> int:
        # bounded: a hostile library's modifier cycle must end in an error, not a hang
        for _ in range(MAX_CHAIN):
            if not tid or btf.kind_of(tid) not in _MODS:
                return tid
            tid = btf.type(tid).type
        raise LinkerError(f"modifier/typedef chain longer than {MAX_CHAIN} at type [{tid}] "
                          f"of {btf.name or 'an input'}: the input's BTF is malformed")

    def mismatch(self, ta: int, tb: int, *, top_proto: bool = False) -> str:
        ta, tb = self._skip(self.a, ta), self._skip(self.b, tb)
        if (ta, tb) in self.seen:
            return ""
        self.seen.add((ta, tb))
        a, b = self.a.type(ta), self.b.type(tb)
        if a.kind == Kind.FWD or b.kind == Kind.FWD:
            fwd, full = (a, b) if a.kind == Kind.FWD else (b, a)
            if full.kind == Kind.FWD:
                return "" if a.name == b.name and a.kflag == b.kflag else f"{a.name!r} vs {b.name!r}"
            want = Kind.UNION if fwd.kflag else Kind.STRUCT
            if full.kind != want or full.name != fwd.name:
                return f"forward declaration {fwd.name!r} does not match {full.kind.name.lower()} {full.name!r}"
            return ""
        if a.kind != b.kind:
            return f"{self.a.describe(ta)!r} is a {a.kind.name}, {self.b.describe(tb)!r} a {b.kind.name}"
        if a.name != b.name and a.kind not in (Kind.FUNC_PROTO,):
            return f"type names differ: {a.name!r} vs {b.name!r}"
        k = a.kind
        if k == Kind.UNKN:
            return ""
        if k == Kind.INT:
            if (a.size, a.encoding, a.bits, a.bits_offset) != (b.size, b.encoding, b.bits, b.bits_offset):
                return f"int {a.name!r} differs in size or encoding"
            return ""
        if k == Kind.FLOAT:
            return "" if a.size == b.size else f"float {a.name!r} differs in size"
        if k in (Kind.ENUM, Kind.ENUM64):
            if a.size != b.size or [(v.name, v.value) for v in a.values] != [(v.name, v.value) for v in b.values]:
                return f"enum {a.name!r} differs"
            return ""
        if k in (Kind.PTR, Kind.TYPEDEF):
            return self.mismatch(a.type, b.type)
        if k == Kind.ARRAY:
            if a.nelems != b.nelems:
                return f"array lengths differ: {a.nelems} vs {b.nelems}"
            return self.mismatch(a.type, b.type)
        if k in (Kind.STRUCT, Kind.UNION):
            if a.size != b.size or len(a.members) != len(b.members):
                return f"{k.name.lower()} {a.name or '(anon)'} differs in size or member count"
            for ma, mb in zip(a.members, b.members):
                if ma.name != mb.name or ma.bit_offset != mb.bit_offset or ma.bitfield_size != mb.bitfield_size:
                    return f"member {ma.name!r} vs {mb.name!r} differ in name or offset"
                why = self.mismatch(ma.type, mb.type)
                if why:
                    return f"member {ma.name!r}: {why}"
            return ""
        if k == Kind.FUNC_PROTO:
            if len(a.params) != len(b.params):
                return f"{len(a.params)} vs {len(b.params)} parameters"
            why = self.mismatch(a.type, b.type)
            if why:
                return f"return type: {why}"
            for i, (pa, pb) in enumerate(zip(a.params, b.params)):
                why = self.mismatch(pa.type, pb.type)
                if why:
                    return f"parameter {i + 1}: {why}"
            return ""
        if k == Kind.FUNC:
            return self.mismatch(a.type, b.type)
        return ""


# --- public API ---------------------------------------------------------------------------


def link(inputs: Sequence[str | os.PathLike[str] | bytes], *, names: Iterable[str] | None = None,
         dedup: bool = True) -> bytes:
    """Statically link relocatable BPF objects (paths or ELF bytes) into one; returns ELF bytes.

    ``names`` labels byte inputs in error messages (paths are labelled by file name).
    The output BTF is deduplicated (as libbpf's linker does) unless ``dedup=False``.
    """
    ln = Linker(dedup=dedup)
    nm = list(names) if names is not None else []
    for i, src in enumerate(inputs):
        ln.add(src, name=nm[i] if i < len(nm) else None)
    return ln.finalize()


def link_files(out: str | os.PathLike[str], inputs: Sequence[str | os.PathLike[str]]) -> None:
    """``tracekit link OUT IN...``: link ``inputs`` and write the result to ``out``."""
    data = link(inputs)
    tmp = Path(os.fspath(out) + ".tmp")
    tmp.write_bytes(data)
    tmp.replace(out)
