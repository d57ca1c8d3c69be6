"""Function symbols, load segments and build id of one ELF file, for symbolizing user stacks.

Pure (reads bytes, makes no BPF syscalls).  The reader is written with :mod:`struct`
rather than pyelftools because a profiler opens every library a process maps: we need
only three things from each file and want them fast and memory-compact:

* the function symbols of ``.symtab`` and ``.dynsym`` (``STT_FUNC``/``STT_GNU_IFUNC``),
  as sorted parallel arrays searched by bisection; names stay in the file's string
  tables and are decoded only when a lookup hits them;
* the ``PT_LOAD`` segments, which turn a *file offset* (what ``/proc/PID/maps`` and
  build-id stacks give) into the *virtual address* the symbol table uses.  For PIE
  executables and shared objects the two differ by the segment's ``p_vaddr - p_offset``;
* the GNU build id (``NT_GNU_BUILD_ID`` note), the key of build-id stacks.

Every offset and size read from the file is checked against the file's length: a
truncated or hostile file raises :class:`tracekit.errors.ELFError`, never an IndexError
or a huge allocation.
"""

from __future__ import annotations

import mmap
import os
import struct
from array import array
from bisect import bisect_right
from dataclasses import dataclass

from tracekit.errors import ELFError

SHT_SYMTAB = 2
SHT_NOTE = 7
SHT_DYNSYM = 11
SHT_NOBITS = 8
PT_LOAD = 1
PT_NOTE = 4
STT_FUNC = 2
STT_GNU_IFUNC = 10
STB_LOCAL, STB_GLOBAL, STB_WEAK = 0, 1, 2
SHN_UNDEF = 0
SHN_XINDEX = 0xFFFF
NT_GNU_BUILD_ID = 3
ET_EXEC, ET_DYN = 2, 3

#: how far back a lookup walks past symbols that end before the address, looking for an
#: enclosing one (a nested local label inside a larger function); bounded so that a
#: stripped region between functions costs O(1) and resolves to nothing
_NESTED_LOOKBACK = 8

# binding -> preference among aliases at one address (lower wins): a global name is the
# one users know (``getpid`` rather than ``__getpid``-style locals)
_BIND_RANK = {STB_GLOBAL: 0, STB_WEAK: 1, STB_LOCAL: 2}


@dataclass(frozen=True, slots=True)
class Segment:
    """A ``PT_LOAD`` program header."""

    offset: int
    vaddr: int
    filesz: int
    memsz: int
    flags: int


@dataclass(frozen=True, slots=True)
class Symbol:
    """A function symbol hit by a lookup: ``name`` at ``addr`` (virtual), ``size`` bytes."""

    name: str
    addr: int
    size: int


class ElfSymbols:
    """The symbol index of one ELF image (see the module docstring).

    Build it with :meth:`from_bytes` or :meth:`from_path`.  Lookups take *virtual
    addresses* as the symbol table has them; :meth:`offset_to_vaddr` converts a file
    offset first.
    """

    __slots__ = ("_starts", "_sizes", "_name_offs", "_strings", "segments", "build_id", "elf_type",
                 "has_symtab", "debuglink", "debuglink_crc")

    def __init__(self) -> None:
        self._starts = array("Q")
        self._sizes = array("Q")
        self._name_offs = array("I")
        self._strings = b""
        self.segments: tuple[Segment, ...] = ()
        self.build_id: bytes | None = None
        self.elf_type = 0
        #: False for a stripped file (only .dynsym): callers may look for a debug file
        self.has_symtab = False
        #: the file name in ``.gnu_debuglink`` (separate debug info), if any, and the
        #: CRC32 that file must have
        self.debuglink: str | None = None
        self.debuglink_crc: int | None = None

    # --- construction ------------------------------------------------------------------

    @classmethod
    def from_path(cls, path: str | os.PathLike[str]) -> ElfSymbols:
        """Parse the file at ``path`` (mapped read-only, so only the tables are touched)."""
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            if size == 0:
                raise ELFError(f"{os.fspath(path)}: empty file, not an ELF object")
            with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as m:
                # every table is copied out of the mapping, so it can close right away
                return cls.from_bytes(m, what=os.fspath(path))

    @classmethod
    def from_bytes(cls, data: bytes | mmap.mmap | memoryview, what: str = "ELF image") -> ElfSymbols:
        self = cls()
        _Parser(data, what).parse_into(self)
        return self

    # --- queries -------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._starts)

    def _name(self, i: int) -> str:
        off = self._name_offs[i]
        end = self._strings.find(b"\0", off)
        if end < 0:
            end = len(self._strings)
        return self._strings[off:end].decode("utf-8", "replace")

    def lookup(self, vaddr: int) -> Symbol | None:
        """The function containing ``vaddr``, or ``None``.

        A symbol with a size contains ``[addr, addr+size)``; a size-0 symbol (hand-written
        assembly) is taken to extend to the next symbol, as BCC and perf do.
        """
        i = bisect_right(self._starts, vaddr) - 1
        if i < 0:
            return None
        for j in range(i, max(i - _NESTED_LOOKBACK, -1), -1):
            start, size = self._starts[j], self._sizes[j]
            if size == 0:
                if j == i:
                    return Symbol(self._name(j), start, 0)
                continue
            if vaddr < start + size:
                return Symbol(self._name(j), start, size)
        return None

    def symbols(self) -> list[Symbol]:
        """Every indexed function symbol, by address (one name per address)."""
        return [Symbol(self._name(i), self._starts[i], self._sizes[i]) for i in range(len(self))]

    def find(self, name: str) -> Symbol | None:
        """The symbol called ``name`` (linear: for tests and tools, not hot paths)."""
        for s in self.symbols():
            if s.name == name:
                return s
        return None

    def offset_to_vaddr(self, file_offset: int) -> int | None:
        """The virtual address the byte at ``file_offset`` is loaded at (None if unmapped)."""
        for s in self.segments:
            if s.offset <= file_offset < s.offset + max(s.filesz, 1):
                return file_offset - s.offset + s.vaddr
        return None

    def vaddr_to_offset(self, vaddr: int) -> int | None:
        for s in self.segments:
            if s.vaddr <= vaddr < s.vaddr + s.filesz:
                return vaddr - s.vaddr + s.offset
        return None


class _Parser:
    """One pass over an ELF image; every read is bounds-checked."""

    def __init__(self, data: bytes | mmap.mmap | memoryview, what: str) -> None:
        self.data = data
        self.n = len(data)
        self.what = what

    def fail(self, why: str) -> ELFError:
        return ELFError(f"{self.what}: {why}")

    def read(self, off: int, size: int) -> bytes:
        if off < 0 or size < 0 or off + size > self.n:
            raise self.fail(f"{size} bytes at offset {off:#x} run past the end of the file ({self.n:#x} bytes); "
                            "the file is truncated or not an ELF object")
        return bytes(self.data[off : off + size])

    def parse_into(self, out: ElfSymbols) -> None:
        ident = self.read(0, 16)
        if ident[:4] != b"\x7fELF":
            raise self.fail("not an ELF file (bad magic)")
        cls, enc = ident[4], ident[5]
        if cls not in (1, 2) or enc not in (1, 2):
            raise self.fail(f"unknown ELF class {cls} or data encoding {enc}")
        e = "<" if enc == 1 else ">"
        is64 = cls == 2
        if is64:
            hdr = struct.unpack(e + "HHIQQQIHHHHHH", self.read(16, 48))
        else:
            hdr = struct.unpack(e + "HHIIIIIHHHHHH", self.read(16, 36))
        (etype, _machine, _ver, _entry, phoff, shoff, _flags, _ehsize,
         phentsize, phnum, shentsize, shnum, shstrndx) = hdr
        out.elf_type = etype
        sh_fmt = e + ("IIQQQQIIQQ" if is64 else "IIIIIIIIII")
        ph_fmt = e + ("IIQQQQQQ" if is64 else "IIIIIIII")
        sym_fmt = e + ("IBBHQQ" if is64 else "IIIBBH")
        sh_size = struct.calcsize(sh_fmt)
        ph_size = struct.calcsize(ph_fmt)

        # --- sections ---
        sections: list[tuple[int, ...]] = []
        if shoff:
            if shentsize < sh_size:
                raise self.fail(f"section header entries of {shentsize} bytes are too small")
            if shnum == 0 or shstrndx == SHN_XINDEX:  # extended numbering lives in section 0
                s0 = struct.unpack(sh_fmt, self.read(shoff, sh_size))
                shnum = shnum or s0[5]
                if shstrndx == SHN_XINDEX:
                    shstrndx = s0[6]
            if shnum * shentsize > self.n:
                raise self.fail(f"{shnum} section headers cannot fit in the file")
            for k in range(shnum):
                sections.append(struct.unpack(sh_fmt, self.read(shoff + k * shentsize, sh_size)))
        # (name, type, flags, addr, offset, size, link, info, align, entsize)

        def sec_bytes(s: tuple[int, ...]) -> bytes:
            if s[1] == SHT_NOBITS:
                return b""
            return self.read(s[4], s[5])

        shstr = sec_bytes(sections[shstrndx]) if 0 < shstrndx < len(sections) else b""

        def sec_name(s: tuple[int, ...]) -> str:
            off = s[0]
            if off >= len(shstr):
                return ""
            end = shstr.find(b"\0", off)
            return shstr[off : end if end >= 0 else len(shstr)].decode("latin-1")

        # --- segments ---
        segs: list[Segment] = []
        notes: list[bytes] = []
        if phoff:
            if phentsize < ph_size:
                raise self.fail(f"program header entries of {phentsize} bytes are too small")
            if phnum * phentsize > self.n:
                raise self.fail(f"{phnum} program headers cannot fit in the file")
            for k in range(phnum):
                p = struct.unpack(ph_fmt, self.read(phoff + k * phentsize, ph_size))
                if is64:
                    ptype, pflags, poff, pvaddr, _pp, pfilesz, pmemsz, _al = p
                else:
                    ptype, poff, pvaddr, _pp, pfilesz, pmemsz, pflags, _al = p
                if ptype == PT_LOAD:
                    segs.append(Segment(poff, pvaddr, pfilesz, pmemsz, pflags))
                elif ptype == PT_NOTE and poff + pfilesz <= self.n:
                    notes.append(self.read(poff, pfilesz))
        out.segments = tuple(segs)

        # --- symbols, build id, debuglink ---
        entries: list[tuple[int, int, int, int]] = []  # (value, rank, size, name offset)
        strings: list[bytes] = []
        base = 0
        sym_size = struct.calcsize(sym_fmt)
        for s in sections:
            stype = s[1]
            if stype == SHT_NOTE:
                notes.append(sec_bytes(s))
            elif stype in (SHT_SYMTAB, SHT_DYNSYM):
                if stype == SHT_SYMTAB:
                    out.has_symtab = True
                link = s[6]
                if not 0 < link < len(sections):
                    raise self.fail(f"symbol table {sec_name(s)!r} links to missing string table {link}")
                table = sec_bytes(s)
                strtab = sec_bytes(sections[link])
                if s[9] and s[9] != sym_size:
                    raise self.fail(f"symbol table {sec_name(s)!r} has {s[9]}-byte entries, expected {sym_size}")
                usable = len(table) - len(table) % sym_size
                for fields in struct.iter_unpack(sym_fmt, memoryview(table)[:usable]):
                    if is64:
                        name, info, _other, shndx, value, size = fields
                    else:
                        name, value, size, info, _other, shndx = fields
                    if (info & 0xF) not in (STT_FUNC, STT_GNU_IFUNC) or shndx == SHN_UNDEF or value == 0:
                        continue
                    if name >= len(strtab):
                        continue  # a name outside its table: unusable, not fatal
                    # rank aliases: binding first, then fewer leading underscores (perf's rule)
                    under = len(strtab[name : name + 4]) - len(strtab[name : name + 4].lstrip(b"_"))
                    entries.append((value, _BIND_RANK.get(info >> 4, 3) * 8 + under, size, base + name))
                strings.append(strtab)
                base += len(strtab)
            elif sec_name(s) == ".gnu_debuglink":
                # the debug file's name, NUL, padding to 4, then the CRC32 of that file
                raw = sec_bytes(s)
                end = raw.find(b"\0")
                if end > 0:
                    out.debuglink = raw[:end].decode("utf-8", "replace")
                    crc_at = (end + 4) & ~3
                    if crc_at + 4 <= len(raw):
                        out.debuglink_crc = struct.unpack_from(e + "I", raw, crc_at)[0]
        if base >= 1 << 32:
            raise self.fail("string tables larger than 4 GiB")
        for n in notes:
            bid = _build_id(n, e)
            if bid:
                out.build_id = bid
                break

        # One entry per address: the best-ranked alias, and among aliases a sized one.
        entries.sort(key=lambda t: (t[0], t[1], -t[2]))
        starts, sizes, offs = out._starts, out._sizes, out._name_offs
        last = -1
        for value, _rank, size, noff in entries:
            if value == last:
                continue
            last = value
            starts.append(value)
            sizes.append(size)
            offs.append(noff)
        out._strings = b"".join(strings)


def _build_id(notes: bytes, e: str) -> bytes | None:
    """The ``NT_GNU_BUILD_ID`` descriptor in a run of ELF notes (4-byte aligned)."""
    off = 0
    n = len(notes)
    while off + 12 <= n:
        namesz, descsz, ntype = struct.unpack_from(e + "III", notes, off)
        off += 12
        name_end = off + ((namesz + 3) & ~3)
        desc_end = name_end + ((descsz + 3) & ~3)
        if desc_end > n or name_end > n:
            return None
        if ntype == NT_GNU_BUILD_ID and notes[off : off + namesz].rstrip(b"\0") == b"GNU":
            return bytes(notes[name_end : name_end + descsz])
        off = desc_end
    return None


__all__ = ["ElfSymbols", "Segment", "Symbol"]
