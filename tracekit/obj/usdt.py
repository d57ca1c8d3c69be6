"""USDT probes (``<sys/sdt.h>``): reading ``.note.stapsdt`` and encoding libbpf's spec records.

Pure: everything here takes bytes and returns data; attaching lives in
:mod:`tracekit.hooks.usdt`.

A USDT probe is a ``nop`` in the code plus an ELF note (owner ``stapsdt``, type 3) whose
descriptor holds three addresses and three strings::

    pc, base, semaphore   (8 bytes each on 64-bit)
    provider\\0 name\\0 args\\0

* ``pc`` is the link-time address of the nop.  Prelink may have moved the whole file after
  the note was written, so the note also records ``base``, the link-time address of the
  ``.stapsdt.base`` section; the real address is ``pc + (sh_addr(.stapsdt.base) - base)``.
  The semaphore moves with everything else and gets the same correction.
* ``semaphore`` (0 if none) is the address of a ``unsigned short`` in ``.probes`` that the
  program tests before evaluating expensive arguments; a tracer increments it while
  attached.  The kernel does that itself for uprobes opened with a ``ref_ctr_offset`` (a
  *file offset*, like the probe address), so both addresses are turned into file offsets
  through the PT_LOAD segment containing them.
* ``args`` is the operand list the assembler saw, one ``SIZE@OPERAND`` per argument,
  space separated: ``-4@%edi 8@-8(%rbp) 4@$5 -4@counter(%rip) -4@(%rax,%rdi,4)``.  A
  negative size means signed.

The BPF side is libbpf's ``usdt.bpf.h``: ``bpf_usdt_arg()`` reads a ``struct
__bpf_usdt_spec`` (looked up by the BPF cookie, or by IP in ``__bpf_usdt_ip_to_spec_id``
on kernels without cookies) and interprets each ``struct __bpf_usdt_arg_spec``.  The
layout of those structs changed once (libbpf 1.7 packed ``arg_type`` into a byte to make
room for the index register of SIB operands) so :func:`spec_layout` reads it from the
object's BTF; :data:`LIBBPF_LAYOUT` is the historical layout for objects without BTF.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from enum import IntEnum

from tracekit.btf.reader import BTF
from tracekit.btf.types import Kind, Type
from tracekit.errors import USDTError

NOTE_SECTION = ".note.stapsdt"
BASE_SECTION = ".stapsdt.base"
NT_STAPSDT = 3
NOTE_OWNER = b"stapsdt"
#: libbpf's BPF_USDT_MAX_ARG_CNT: usdt.bpf.h has room for this many arguments per probe
MAX_ARGS = 12


class ArgType(IntEnum):
    """``enum __bpf_usdt_arg_type``."""

    CONST = 0  # "4@$71": the value itself
    REG = 1  # "-4@%edi": a register of struct pt_regs
    REG_DEREF = 2  # "8@-8(%rbp)": memory at register + offset
    SIB = 3  # "-4@8(%rax,%rdi,4)": memory at base + index << shift + offset (libbpf 1.7+)


# Offsets in x86-64 ``struct pt_regs`` (arch/x86/include/asm/ptrace.h): the order the
# entry code pushes registers in, which is ABI for BPF programs reading the context.
_PT_REGS = ("r15", "r14", "r13", "r12", "bp", "bx", "r11", "r10", "r9", "r8", "ax", "cx", "dx",
            "si", "di", "orig_ax", "ip", "cs", "flags", "sp", "ss")
PT_REGS_OFFSET: dict[str, int] = {name: 8 * i for i, name in enumerate(_PT_REGS)}

#: every x86-64 register name the assembler can print, -> (pt_regs field, width in bytes).
#: Sub-registers read the whole 8-byte slot: the arg size (the bitshift) truncates it.
#: The legacy high-byte registers (%ah..%dh) have no slot of their own and are refused.
X86_REGISTERS: dict[str, tuple[str, int]] = {}
for _field, _names in {
    "ax": ("rax", "eax", "ax", "al"), "bx": ("rbx", "ebx", "bx", "bl"),
    "cx": ("rcx", "ecx", "cx", "cl"), "dx": ("rdx", "edx", "dx", "dl"),
    "si": ("rsi", "esi", "si", "sil"), "di": ("rdi", "edi", "di", "dil"),
    "bp": ("rbp", "ebp", "bp", "bpl"), "sp": ("rsp", "esp", "sp", "spl"),
    "ip": ("rip", "eip", "", ""),
}.items():
    for _name, _width in zip(_names, (8, 4, 2, 1)):
        if _name:
            X86_REGISTERS[_name] = (_field, _width)
for _n in range(8, 16):
    for _suffix, _width in (("", 8), ("d", 4), ("w", 2), ("b", 1)):
        X86_REGISTERS[f"r{_n}{_suffix}"] = (f"r{_n}", _width)
del _field, _names, _name, _width, _n, _suffix


def register_offset(reg: str) -> int:
    """Offset in ``struct pt_regs`` of the slot holding register ``reg`` ("edi", "%r8d")."""
    name = reg.removeprefix("%")
    hit = X86_REGISTERS.get(name)
    if hit is None:
        extra = " (the high-byte registers %ah..%dh have no pt_regs slot)" if name in (
            "ah", "bh", "ch", "dh") else ""
        raise USDTError(f"unknown x86-64 register %{name} in a USDT argument{extra}")
    return PT_REGS_OFFSET[hit[0]]


@dataclass(frozen=True, slots=True)
class USDTArg:
    """One parsed argument spec such as ``-4@8(%rdi)``.

    ``value`` is the constant (CONST) or the displacement (REG_DEREF, SIB); for a
    ``symbol(%rip)`` operand it is the displacement from the symbol, and ``symbol`` names
    it: :meth:`USDTNote.resolved_args` turns that into an offset from the probe's own
    address, which is what ``%rip`` holds when the uprobe fires.
    """

    text: str
    size: int  # 1, 2, 4 or 8 bytes
    signed: bool
    type: ArgType
    value: int = 0
    reg: str = ""  # base register as written, without '%'
    index_reg: str = ""
    scale: int = 1
    symbol: str = ""

    @property
    def bitshift(self) -> int:
        """libbpf's ``arg_bitshift``: bits to clear (and sign-extend) above the value."""
        return 64 - 8 * self.size

    @property
    def reg_off(self) -> int:
        return register_offset(self.reg) if self.reg else 0

    @property
    def index_reg_off(self) -> int:
        return register_offset(self.index_reg) if self.index_reg else 0

    @property
    def scale_bitshift(self) -> int:
        return self.scale.bit_length() - 1

    def describe(self) -> str:
        """Human form for listings: ``s32 reg %edi``, ``u8 const 5``, ``s64 mem 8(%rdi)``."""
        t = f"{'s' if self.signed else 'u'}{8 * self.size}"
        loc = self.text.partition("@")[2]
        kind = {ArgType.CONST: "const", ArgType.REG: "reg", ArgType.REG_DEREF: "mem",
                ArgType.SIB: "mem"}[self.type]
        return f"{t} {kind} {loc.removeprefix('$')}"


_NUM = r"[-+]?(?:0[xX][0-9a-fA-F]+|\d+)"
_REG = r"%([a-z0-9]+)"
_SIZE_AT = re.compile(r"\s*(-?\d+)\s*@\s*(.*?)\s*$", re.S)
_CONST = re.compile(rf"\$({_NUM})")
_REG_ONLY = re.compile(rf"{_REG}")
# disp(%base) with disp a number, a symbol, or symbol+/-number; disp may be empty
_DEREF = re.compile(rf"(?P<disp>[^(]*)\(\s*{_REG}\s*\)")
_SIB_RE = re.compile(rf"(?P<disp>[^(]*)\(\s*(?:{_REG})?\s*,\s*{_REG}\s*(?:,\s*(?P<scale>\d+)\s*)?\)")
_SYMDISP = re.compile(r"(?P<sym>[A-Za-z_.$][A-Za-z0-9_.$@]*)\s*(?P<off>[-+]\s*(?:0[xX][0-9a-fA-F]+|\d+))?")


def _number(text: str) -> int:
    return int(text.replace(" ", ""), 0)


def parse_arg(text: str) -> USDTArg:
    """Parse one x86-64 argument spec (``-4@%edi``, ``8@-8(%rbp)``, ``4@$5``, ...)."""
    m = _SIZE_AT.fullmatch(text)
    if m is None:
        raise USDTError(f"USDT argument {text!r} is not SIZE@OPERAND (e.g. '-4@%edi')")
    size = int(m.group(1))
    signed, size = size < 0, abs(size)
    if size not in (1, 2, 4, 8):
        raise USDTError(f"USDT argument {text!r}: size {size} is not 1, 2, 4 or 8 bytes")
    op = m.group(2)
    clean = text.strip()
    c = _CONST.fullmatch(op)
    if c:
        return USDTArg(clean, size, signed, ArgType.CONST, value=_number(c.group(1)))
    r = _REG_ONLY.fullmatch(op)
    if r:
        register_offset(r.group(1))
        return USDTArg(clean, size, signed, ArgType.REG, reg=r.group(1))
    d = _DEREF.fullmatch(op)
    if d:
        reg = d.group(2)
        register_offset(reg)
        disp, sym = _displacement(d.group("disp"), clean)
        if reg in ("rip", "eip"):
            if not sym:
                # A bare number before (%rip) is relative to the *next instruction* of
                # the instruction the assembler would have emitted; the note has none.
                raise USDTError(f"USDT argument {text!r}: a numeric %rip displacement has no "
                                "meaning outside an instruction; only symbol(%rip) is supported")
        elif sym:
            raise USDTError(f"USDT argument {text!r}: a symbol displacement is only supported "
                            "relative to %rip")
        return USDTArg(clean, size, signed, ArgType.REG_DEREF, value=disp, reg=reg, symbol=sym)
    s = _SIB_RE.fullmatch(op)
    if s:
        base, index = s.group(2), s.group(3)
        register_offset(index)
        scale = int(s.group("scale") or 1)
        if scale not in (1, 2, 4, 8):
            raise USDTError(f"USDT argument {text!r}: scale {scale} is not 1, 2, 4 or 8")
        disp, sym = _displacement(s.group("disp"), clean)
        if not base:
            if not sym:
                raise USDTError(f"USDT argument {text!r}: an index without a base register or a "
                                "symbol is not supported by usdt.bpf.h")
            # "table(,%rdi,4)" of a fixed-address executable: the symbol's address is
            # reached from %rip as for "table(%rip)", the index added on top
            base = "rip"
        else:
            register_offset(base)
            if sym:
                raise USDTError(f"USDT argument {text!r}: a symbol displacement with a base "
                                "register is not supported")
        return USDTArg(clean, size, signed, ArgType.SIB, value=disp, reg=base, index_reg=index, scale=scale,
                       symbol=sym)
    raise USDTError(f"USDT argument {text!r}: unrecognized x86-64 operand {op!r} (expected "
                    "$CONST, %REG, DISP(%REG) or DISP(%BASE,%INDEX,SCALE))")


def _displacement(text: str, arg: str) -> tuple[int, str]:
    t = text.strip()
    if not t:
        return 0, ""
    if re.fullmatch(_NUM, t):
        return _number(t), ""
    m = _SYMDISP.fullmatch(t)
    if m is None:
        raise USDTError(f"USDT argument {arg!r}: cannot read displacement {t!r}")
    return (_number(m.group("off")) if m.group("off") else 0), m.group("sym")


def parse_args(text: str) -> tuple[USDTArg, ...]:
    """All arguments of a note's argument string (empty string: no arguments)."""
    # Operands contain no spaces except inside parentheses ("(%rax, %rdx)" from some
    # compilers): split on spaces outside them.
    parts: list[str] = []
    depth, cur = 0, ""
    for ch in text:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch.isspace() and depth == 0:
            if cur:
                parts.append(cur)
            cur = ""
        else:
            cur += ch
    if cur:
        parts.append(cur)
    # "-4 @ %edi" style (spaces around '@') joins back
    merged: list[str] = []
    for p in parts:
        if merged and (p.startswith("@") or merged[-1].endswith("@")):
            merged[-1] += p
        else:
            merged.append(p)
    return tuple(parse_arg(p) for p in merged)


# --------------------------------------------------------------------------- ELF

@dataclass(frozen=True, slots=True)
class Segment:
    """A PT_LOAD program header."""

    vaddr: int
    memsz: int
    offset: int
    filesz: int
    flags: int  # PF_X 1, PF_W 2, PF_R 4

    @property
    def executable(self) -> bool:
        return bool(self.flags & 1)

    def contains(self, vaddr: int) -> bool:
        return self.vaddr <= vaddr < self.vaddr + self.memsz


@dataclass(frozen=True, slots=True)
class USDTNote:
    """One probe site: a note as written plus its prelink-corrected addresses."""

    provider: str
    name: str
    pc: int  # address as written in the note
    base: int  # the note's idea of .stapsdt.base
    semaphore: int  # as written; 0: none
    args_text: str
    args: tuple[USDTArg, ...]
    address: int  # pc corrected for prelink: the probe's link-time virtual address
    semaphore_address: int  # 0: none
    file_offset: int  # of the nop: what a uprobe is opened at (-1 when ``error``)
    semaphore_offset: int  # file offset of the semaphore (the uprobe ref_ctr_offset); 0: none
    #: why this probe cannot be attached (an argument form or address tracekit cannot
    #: use); one bad note must not hide the file's other probes, so it is kept, not raised
    error: str = ""

    @property
    def full_name(self) -> str:
        return f"{self.provider}:{self.name}"


@dataclass(frozen=True)
class USDTFile:
    """The USDT view of one ELF file: its probes and what is needed to locate them."""

    e_type: int  # ET_EXEC 2, ET_DYN 3
    segments: tuple[Segment, ...]
    notes: tuple[USDTNote, ...]
    symbols: dict[str, int] = field(default_factory=dict, repr=False)  # for symbol(%rip) args

    @property
    def is_shared(self) -> bool:
        """ET_DYN: a shared library or a PIE, loaded at a base address chosen at run time."""
        return self.e_type == 3

    def find(self, provider: str, name: str) -> list[USDTNote]:
        return [n for n in self.notes if n.provider == provider and n.name == name]

    def probes(self) -> list[tuple[str, str]]:
        """(provider, name) pairs, once each, in note order."""
        return list(dict.fromkeys((n.provider, n.name) for n in self.notes))

    def resolved_args(self, note: USDTNote) -> tuple[USDTArg, ...]:
        """``note.args`` with ``symbol(%rip)`` operands turned into offsets from the probe's
        address (``%rip`` is the probe address when a uprobe's BPF program runs)."""
        out = []
        for a in note.args:
            if a.symbol:
                addr = self.symbols.get(a.symbol)
                if addr is None:
                    raise USDTError(f"USDT {note.full_name}: argument {a.text!r} names symbol "
                                    f"{a.symbol!r}, which is not in the file's symbol tables "
                                    "(stripped binary?)")
                # the symbol moved with the probe under prelink, so compare link-time
                # addresses corrected the same way
                shift = note.address - note.pc
                a = USDTArg(a.text, a.size, a.signed, a.type, value=addr + shift + a.value - note.address,
                            reg=a.reg, index_reg=a.index_reg, scale=a.scale)
            out.append(a)
        return tuple(out)


_EHDR = struct.Struct("<16sHHIQQQIHHHHHH")
_SHDR = struct.Struct("<IIQQQQIIQQ")
_PHDR = struct.Struct("<IIQQQQQQ")
_SYM = struct.Struct("<IBBHQQ")
_NHDR = struct.Struct("<III")
SHT_SYMTAB, SHT_NOTE, SHT_DYNSYM, SHT_NOBITS = 2, 7, 11, 8
PT_LOAD = 1


def _cstr(data: bytes, off: int) -> str:
    end = data.find(b"\0", off)
    if off > len(data) or end < 0:
        raise USDTError(f"string at offset {off} runs past its table")
    return data[off:end].decode("utf-8", "replace")


def parse_note_section(data: bytes) -> list[tuple[int, int, int, str, str, str]]:
    """``(pc, base, semaphore, provider, name, args)`` of every stapsdt note in ``data``
    (the raw contents of ``.note.stapsdt``; 64-bit little-endian descriptors)."""
    out = []
    off = 0
    while off + _NHDR.size <= len(data):
        namesz, descsz, ntype = _NHDR.unpack_from(data, off)
        name_off = off + _NHDR.size
        desc_off = name_off + ((namesz + 3) & ~3)
        end = desc_off + ((descsz + 3) & ~3)
        if desc_off + descsz > len(data):
            raise USDTError(f"{NOTE_SECTION}: note at offset {off} runs past the section "
                            f"({descsz} descriptor bytes)")
        owner = data[name_off:name_off + namesz].rstrip(b"\0")
        if owner == NOTE_OWNER and ntype == NT_STAPSDT:
            desc = data[desc_off:desc_off + descsz]
            if len(desc) < 24:
                raise USDTError(f"{NOTE_SECTION}: descriptor at offset {off} has {len(desc)} bytes, "
                                "too short for three addresses (only 64-bit files are supported)")
            pc, base, sema = struct.unpack_from("<QQQ", desc)
            strs = desc[24:].split(b"\0")
            if len(strs) < 3:
                raise USDTError(f"{NOTE_SECTION}: descriptor at offset {off} lacks provider, name "
                                "and argument strings")
            provider, name, args = (s.decode("utf-8", "replace") for s in strs[:3])
            out.append((pc, base, sema, provider, name, args))
        off = end
    return out


def _file_offset(segs: Sequence[Segment], vaddr: int, *, executable: bool, what: str) -> int:
    for s in segs:
        if s.contains(vaddr) and vaddr < s.vaddr + s.filesz:
            if s.executable != executable:
                raise USDTError(f"{what} at {vaddr:#x} lies in a{'' if s.executable else ' non'}-executable "
                                "segment; the note does not describe this file's layout")
            return vaddr - s.vaddr + s.offset
    raise USDTError(f"{what} at {vaddr:#x} lies in no loadable segment of the file")


def read_usdt(elf: bytes | memoryview, *, with_symbols: bool = True) -> USDTFile:
    """Parse the USDT notes of an ELF executable or shared library (its bytes).

    Raises :class:`USDTError` for a file that is not a 64-bit little-endian ELF, or whose
    notes are malformed.  A file without ``.note.stapsdt`` has no probes (not an error).
    """
    data = bytes(elf) if isinstance(elf, memoryview) else elf
    if len(data) < _EHDR.size or data[:4] != b"\x7fELF":
        raise USDTError("not an ELF file")
    if data[4] != 2 or data[5] != 1:
        raise USDTError("only 64-bit little-endian ELF files are supported for USDT")
    (_ident, e_type, _machine, _ver, _entry, phoff, shoff, _flags, _ehsize, phentsize, phnum,
     shentsize, shnum, shstrndx) = _EHDR.unpack_from(data)

    def section_headers() -> list[tuple[int, ...]]:
        if not shoff or shentsize < _SHDR.size:
            return []
        n = shnum
        if n == 0 and shoff + _SHDR.size <= len(data):  # >= SHN_LORESERVE sections: count in sh_size of #0
            n = _SHDR.unpack_from(data, shoff)[5]
        if shoff + n * shentsize > len(data):
            raise USDTError("section header table runs past the end of the file")
        return [_SHDR.unpack_from(data, shoff + i * shentsize) for i in range(n)]

    shdrs = section_headers()
    segs: list[Segment] = []
    if phoff and phentsize >= _PHDR.size:
        if phoff + phnum * phentsize > len(data):
            raise USDTError("program header table runs past the end of the file")
        for i in range(phnum):
            p_type, p_flags, p_offset, p_vaddr, _pa, p_filesz, p_memsz, _al = _PHDR.unpack_from(
                data, phoff + i * phentsize)
            if p_type == PT_LOAD:
                segs.append(Segment(p_vaddr, p_memsz, p_offset, p_filesz, p_flags))

    def sec_data(sh: tuple[int, ...]) -> bytes:
        off, size = sh[4], sh[5]
        if sh[1] == SHT_NOBITS:
            return b""
        if off + size > len(data):
            raise USDTError("a section runs past the end of the file")
        return data[off:off + size]

    names: dict[str, tuple[int, ...]] = {}
    if shdrs and shstrndx < len(shdrs):
        strtab = sec_data(shdrs[shstrndx])
        for sh in shdrs:
            if sh[0] < len(strtab):
                names.setdefault(_cstr(strtab, sh[0]), sh)
    note_sh = names.get(NOTE_SECTION)
    if note_sh is None:
        return USDTFile(e_type, tuple(segs), ())
    base_sh = names.get(BASE_SECTION)
    base_addr = base_sh[3] if base_sh is not None else 0

    notes = []
    need_syms = False
    for pc, base, sema, provider, name, args_text in parse_note_section(sec_data(note_sh)):
        # prelink correction (only when both sides know the base, as libbpf does)
        shift = base_addr - base if base_addr and base else 0
        addr = pc + shift
        sema_addr = sema + shift if sema else 0
        what = f"USDT {provider}:{name}"
        try:
            args = parse_args(args_text)
            if len(args) > MAX_ARGS:
                raise USDTError(f"{what} has {len(args)} arguments; usdt.bpf.h holds at most {MAX_ARGS}")
            off = _file_offset(segs, addr, executable=True, what=what)
            sema_off = _file_offset(segs, sema_addr, executable=False, what=f"{what} semaphore") if sema_addr else 0
        except USDTError as e:
            notes.append(USDTNote(provider, name, pc, base, sema, args_text, (), addr, sema_addr, -1, 0,
                                  error=f"{what} at {addr:#x}: {e}"))
            continue
        need_syms |= any(a.symbol for a in args)
        notes.append(USDTNote(provider, name, pc, base, sema, args_text, args, addr, sema_addr, off, sema_off))

    symbols: dict[str, int] = {}
    if need_syms and with_symbols:
        for sh in shdrs:
            if sh[1] in (SHT_SYMTAB, SHT_DYNSYM) and sh[6] < len(shdrs):
                symbols.update(_symbols(sec_data(sh), sec_data(shdrs[sh[6]]), symbols))
    return USDTFile(e_type, tuple(segs), tuple(notes), symbols)


def _symbols(symtab: bytes, strtab: bytes, have: dict[str, int]) -> Iterable[tuple[str, int]]:
    """Defined data and function symbols (name -> address); the first table seen wins."""
    for st_name, st_info, _other, shndx, value, _size in _SYM.iter_unpack(symtab[: len(symtab) // 24 * 24]):
        if shndx == 0 or not st_name or (st_info & 0xF) not in (0, 1, 2, 6, 10):
            continue  # undefined, or a section/file symbol
        if st_name < len(strtab):
            name = _cstr(strtab, st_name)
            if name not in have:
                yield name, value


# --------------------------------------------------------------------------- spec records

@dataclass(frozen=True, slots=True)
class BitField:
    bit_offset: int
    bits: int


@dataclass(frozen=True)
class SpecLayout:
    """Where ``struct __bpf_usdt_spec`` keeps each field (bit offsets and widths)."""

    size: int  # bytes of struct __bpf_usdt_spec
    args_offset: int  # byte offset of args[]
    arg_size: int  # bytes of one struct __bpf_usdt_arg_spec
    max_args: int
    usdt_cookie: BitField
    arg_cnt: BitField
    arg: dict[str, BitField]  # val_off, arg_type, reg_off, arg_signed, arg_bitshift[, idx_reg_off, scale_bitshift]
    arg_type_values: dict[str, int] = field(default_factory=dict)  # enum names -> values, from BTF

    @property
    def supports_sib(self) -> bool:
        return "idx_reg_off" in self.arg and "scale_bitshift" in self.arg

    def sib_value(self) -> int:
        return self.arg_type_values.get("BPF_USDT_ARG_SIB", int(ArgType.SIB))


#: libbpf's layout before 1.7 (also the non-SIB part of the 1.7 layout):
#: arg_spec {u64 val_off; enum arg_type; short reg_off; bool arg_signed; char arg_bitshift}
#: spec {arg_spec args[12]; u64 usdt_cookie; short arg_cnt}
LIBBPF_LAYOUT = SpecLayout(
    size=208, args_offset=0, arg_size=16, max_args=MAX_ARGS,
    usdt_cookie=BitField(192 * 8, 64), arg_cnt=BitField(200 * 8, 16),
    arg={"val_off": BitField(0, 64), "arg_type": BitField(64, 32), "reg_off": BitField(96, 16),
         "arg_signed": BitField(112, 8), "arg_bitshift": BitField(120, 8)},
)


def spec_layout(btf: BTF, value_type_id: int) -> SpecLayout:
    """The layout of ``struct __bpf_usdt_spec`` as the object's BTF describes it at
    ``value_type_id`` (the value type of its ``__bpf_usdt_specs`` map)."""
    spec_t = btf.resolve(value_type_id)
    if spec_t.kind != Kind.STRUCT:
        raise USDTError(f"__bpf_usdt_specs values are {btf.describe(value_type_id)}, "
                        "not struct __bpf_usdt_spec")

    def members(t: Type) -> dict[str, tuple[int, int, int]]:
        # name -> (bit offset, bit width, type id); plain members are as wide as their type
        return {m.name: (m.bit_offset, m.bitfield_size or 8 * btf.size_of(m.type), m.type)
                for m in t.members}

    top = members(spec_t)
    for need in ("args", "usdt_cookie", "arg_cnt"):
        if need not in top:
            raise USDTError(f"struct __bpf_usdt_spec in the object's BTF has no {need!r}: "
                            "not libbpf's usdt.bpf.h layout")
    args_t = btf.resolve(top["args"][2])
    if args_t.kind != Kind.ARRAY:
        raise USDTError("struct __bpf_usdt_spec.args in the object's BTF is not an array")
    arg_t = btf.resolve(args_t.type)
    if arg_t.kind != Kind.STRUCT:
        raise USDTError("struct __bpf_usdt_spec.args[] in the object's BTF is not a struct")
    am = members(arg_t)
    for need in ("val_off", "arg_type", "reg_off", "arg_signed", "arg_bitshift"):
        if need not in am:
            raise USDTError(f"struct __bpf_usdt_arg_spec in the object's BTF has no {need!r}")
    et = btf.resolve(am["arg_type"][2])
    enum_vals = {v.name: v.value for v in et.values} if et.kind in (Kind.ENUM, Kind.ENUM64) else {}
    return SpecLayout(
        size=spec_t.size, args_offset=top["args"][0] // 8, arg_size=arg_t.size, max_args=args_t.nelems,
        usdt_cookie=BitField(*top["usdt_cookie"][:2]), arg_cnt=BitField(*top["arg_cnt"][:2]),
        arg={k: BitField(*v[:2]) for k, v in am.items() if not k.startswith("__")},
        arg_type_values=enum_vals,
    )


def _put(buf: bytearray, f: BitField, value: int) -> None:
    """Store ``value`` (two's complement, truncated) in bit field ``f`` of ``buf`` (LE)."""
    mask = (1 << f.bits) - 1
    lo, hi = f.bit_offset // 8, (f.bit_offset + f.bits + 7) // 8
    cur = int.from_bytes(buf[lo:hi], "little")
    shift = f.bit_offset - 8 * lo
    cur = (cur & ~(mask << shift)) | ((value & mask) << shift)
    buf[lo:hi] = cur.to_bytes(hi - lo, "little")


def encode_spec(args: Sequence[USDTArg], cookie: int = 0, layout: SpecLayout = LIBBPF_LAYOUT,
                *, probe: str = "") -> bytes:
    """The ``struct __bpf_usdt_spec`` value for a probe with ``args`` (symbols resolved)."""
    what = f"USDT {probe}" if probe else "USDT probe"
    if len(args) > layout.max_args:
        raise USDTError(f"{what} has {len(args)} arguments; the object's usdt.bpf.h holds {layout.max_args}")
    buf = bytearray(layout.size)
    for i, a in enumerate(args):
        if a.symbol:
            raise USDTError(f"{what}: argument {a.text!r} still names symbol {a.symbol!r}: "
                            "resolve it with USDTFile.resolved_args()")
        base = 8 * (layout.args_offset + i * layout.arg_size)

        def at(name: str, base: int = base) -> BitField:
            f = layout.arg[name]
            return BitField(base + f.bit_offset, f.bits)

        arg_type = int(a.type)
        if a.type == ArgType.SIB:
            if not layout.supports_sib:
                raise USDTError(f"{what}: argument #{i} {a.text!r} uses scale-index-base addressing, "
                                "which the object's usdt.bpf.h cannot read (libbpf 1.7 added it: build "
                                "the program against a newer <bpf/usdt.bpf.h>)")
            arg_type = layout.sib_value()
            _put(buf, at("idx_reg_off"), a.index_reg_off)
            _put(buf, at("scale_bitshift"), a.scale_bitshift)
        _put(buf, at("val_off"), a.value)
        _put(buf, at("arg_type"), arg_type)
        _put(buf, at("reg_off"), a.reg_off)
        _put(buf, at("arg_signed"), int(a.signed))
        _put(buf, at("arg_bitshift"), a.bitshift)
    _put(buf, layout.usdt_cookie, cookie)
    _put(buf, layout.arg_cnt, len(args))
    return bytes(buf)


__all__ = [
    "ArgType", "USDTArg", "USDTNote", "USDTFile", "Segment", "SpecLayout", "BitField", "LIBBPF_LAYOUT",
    "PT_REGS_OFFSET", "X86_REGISTERS", "MAX_ARGS", "register_offset", "parse_arg", "parse_args",
    "parse_note_section", "read_usdt", "spec_layout", "encode_spec",
]
