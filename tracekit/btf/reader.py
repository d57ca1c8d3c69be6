"""A lazy, indexed BTF reader.

Kernel BTF has ~130k types; decoding all of them into Python objects costs far more than
a loader can afford.  So the reader keeps the raw bytes, computes the start of every type
in one tight pass over a u32 array, and decodes a type only when it is asked for (then
caches it).  Name look-ups search the string table with ``bytes.find`` (C speed) and map
the string offsets found to type ids through a lazily built ``name_off -> ids`` index.

Split BTF (a kernel module's BTF on top of vmlinux) is supported: type ids and string
offsets continue where the base's end, exactly as the kernel numbers them.
"""

from __future__ import annotations

import mmap
import os
import stat
import struct
import sys
from array import array
from collections.abc import Iterator

from tracekit.btf.types import (
    BTF_HEADER_SIZE,
    BTF_HEADER_SIZE_LAYOUT,
    BTF_KIND_MASK,
    BTF_MAGIC,
    BTF_VLEN_MASK,
    KIND_EXTRA_FIXED,
    KIND_EXTRA_PER_VLEN,
    MODIFIER_KINDS,
    VOID,
    EnumValue,
    Kind,
    Member,
    Param,
    Type,
    VarSecinfo,
    essential_name,
)
from tracekit.errors import BTFError

_MAX_KIND = max(Kind)
# Step tables for the offset scan, in u32 words.  Unknown kinds get a step that ends the
# scan past the end, which the scan then reports as an error.
_BAD_STEP = 1 << 40
_FIXED_WORDS = [3 + KIND_EXTRA_FIXED.get(k, 0) // 4 if k <= _MAX_KIND else _BAD_STEP
                for k in range(BTF_KIND_MASK + 1)]
# UNKN is only id 0 (void), never encoded: an encoded kind 0 is refused like the kernel does
_FIXED_WORDS[0] = _BAD_STEP
_VLEN_WORDS = [KIND_EXTRA_PER_VLEN.get(k, 0) // 4 for k in range(BTF_KIND_MASK + 1)]

POINTER_SIZE = 8  # BPF is a 64-bit target
#: longest typedef/modifier chain followed, and deepest array/struct nesting walked
#: (the kernel's MAX_RESOLVE_DEPTH is 32; twice that leaves room, and a hostile cycle
#: ends in a BTFError instead of a hang or a RecursionError)
MAX_CHAIN = 64
#: largest type size accepted (the kernel refuses BTF types over U32_MAX bytes)
MAX_TYPE_SIZE = 0xFFFFFFFF
#: types one describe() spells before writing "..." (error messages stay short)
_DESCRIBE_BUDGET = 256
# Type sections at least this big are indexed in place instead of copied to an array.
_ZERO_COPY_MIN = 1 << 20


class _StepTable(dict[int, int]):
    """``info`` word -> words from this type's header to the next one's (memoized)."""

    def __init__(self, fixed: list[int] = _FIXED_WORDS, per_vlen: list[int] = _VLEN_WORDS) -> None:
        super().__init__()
        self.fixed = fixed
        self.per_vlen = per_vlen

    def __missing__(self, info: int) -> int:
        k = (info >> 24) & BTF_KIND_MASK
        step = self.fixed[k] + (info & BTF_VLEN_MASK) * self.per_vlen[k]
        self[info] = step
        return step


def _parse_layout(data: bytes | mmap.mmap, start: int, length: int, what: str) -> list[tuple[int, int, int]]:
    """The layout section: ``struct btf_layout {u8 info_sz; u8 elem_sz; u16 flags}`` per kind."""
    if length % 4:
        raise BTFError(f"{what}: layout section length {length} is not a multiple of 4")
    if length // 4 > BTF_KIND_MASK + 1:
        raise BTFError(f"{what}: layout section describes {length // 4} kinds (at most {BTF_KIND_MASK + 1})")
    return [struct.unpack_from("<BBH", data, start + 4 * i) for i in range(length // 4)]

def _s32(v: int) -> int:
    return v - (1 << 32) if v & 0x80000000 else v


class BTF:
    """Parsed BTF.  Type id 0 is ``void``; ids run to ``len(self) - 1``."""

    def __init__(
        self,
        data: bytes,
        base: BTF | None = None,
        *,
        name: str = "",
        offsets: array[int] | None = None,
        name_offsets: bytes | None = None,
    ) -> None:
        """``offsets`` / ``name_offsets`` are a previous scan's :attr:`offsets` and
        :meth:`name_offsets` of the same bytes (an on-disk cache); they skip the scan."""
        self.name = name
        self.base = base
        # bytes are kept as given; an mmap (the kernel BTF cache) too: nothing is copied
        # or paged in until used
        self.data = data if isinstance(data, (bytes, mmap.mmap)) else bytes(data)
        if len(self.data) < BTF_HEADER_SIZE:
            raise BTFError(f"{self._what()}: {len(self.data)} bytes is too short for a BTF header")
        magic = struct.unpack_from("<H", self.data, 0)[0]
        if magic == BTF_MAGIC:
            self.endian = "<"
        elif magic == 0x9FEB:
            self.endian = ">"
        else:
            raise BTFError(f"{self._what()}: bad magic {magic:#06x} (expected 0xeb9f)")
        (_, self.version, self.flags, hdr_len, type_off, type_len, str_off, str_len) = struct.unpack_from(
            self.endian + "HBBIIIII", self.data, 0
        )
        if self.version != 1:
            raise BTFError(f"{self._what()}: unsupported BTF version {self.version}")
        if hdr_len < BTF_HEADER_SIZE or hdr_len > len(self.data):
            raise BTFError(f"{self._what()}: bad header length {hdr_len}")
        # Linux 7.1+ (pahole 1.31+) grows the header by layout_off/layout_len; fields past
        # the ones we know must be zero to be safe to ignore.
        layout_off = layout_len = 0
        if hdr_len >= BTF_HEADER_SIZE_LAYOUT:
            layout_off, layout_len = struct.unpack_from(self.endian + "II", self.data, BTF_HEADER_SIZE)
        known = BTF_HEADER_SIZE_LAYOUT if hdr_len >= BTF_HEADER_SIZE_LAYOUT else BTF_HEADER_SIZE
        if any(self.data[known:hdr_len]):
            raise BTFError(f"{self._what()}: header has unknown non-zero fields")
        self.hdr_len = hdr_len
        end = len(self.data)
        if hdr_len + type_off + type_len > end or hdr_len + str_off + str_len > end:
            raise BTFError(f"{self._what()}: type or string section runs past the end of the data")
        if type_off % 4 or type_len % 4:
            raise BTFError(f"{self._what()}: type section is not 4-byte aligned")
        #: the layout section's (info_sz, elem_sz, flags) per kind; [] when there is none
        self.layout: list[tuple[int, int, int]] = []
        if layout_len:
            if layout_off % 4 or layout_off < type_off + type_len or layout_off + layout_len > str_off:
                raise BTFError(f"{self._what()}: layout section at {layout_off}+{layout_len} is misplaced "
                               f"(it must be 4-byte aligned, after the types and before the strings)")
            self.layout = _parse_layout(self.data, hdr_len + layout_off, layout_len, self._what())
        fixed, per_vlen = self._step_tables(base)
        tstart = hdr_len + type_off
        native = (self.endian == "<") == (sys.byteorder == "little")
        self._words: array[int] | memoryview
        if native and type_len >= _ZERO_COPY_MIN and tstart % 4 == 0:
            # Kernel-sized BTF: index the type section in place (saves a 3 MB copy)
            self._words = memoryview(self.data)[tstart : tstart + type_len].cast("I")
        else:
            self._words = array("I")
            # via a memoryview: one copy of the type section instead of two
            self._words.frombytes(memoryview(self.data)[tstart : tstart + type_len])
            if not native:
                self._words.byteswap()
        sstart = hdr_len + str_off
        # The string section is searched in place (bounded finds on self.data);
        # ``strings`` (a copy) is made only when someone asks for it.
        self._sstart: int = sstart
        self._send: int = sstart + str_len
        self._strings: bytes | None = None
        if base is None:
            if str_len == 0 or self.data[sstart] != 0:
                raise BTFError(f"{self._what()}: string section must start with a NUL byte")
            self.start_id = 1
            self.start_str = 0
        else:
            self.start_id = len(base)
            self.start_str = base.start_str + base.strings_len
        self._fixed_words, self._vlen_words = fixed, per_vlen
        if offsets is not None and (len(offsets) == 0 or offsets[-1] < len(self._words)):
            self._offsets = offsets
        else:
            self._offsets = self._scan()
        self._cache: dict[int, Type] = {}
        self._name_index: dict[int, list[int]] | None = None
        # Results of find()/find_by_essential_name() by name (all kinds, sorted).  A look-up
        # costs a pass over the string table and the name array (~1 ms on vmlinux); CO-RE
        # asks for the same few names over and over.  Kernel BTF persists these on disk.
        self._memo_find: dict[str, tuple[int, ...]] = {}
        self._memo_ess: dict[str, tuple[int, ...]] = {}
        # name_off of every type, as native u32s in bytes: looked up with bytes.find
        self._names_b: bytes | None = None
        if name_offsets is not None and len(name_offsets) == 4 * len(self._offsets):
            self._names_b = name_offsets

    # --- construction helpers -------------------------------------------------------

    @classmethod
    def from_file(cls, path: str, base: BTF | None = None) -> BTF:
        """Read raw BTF (``/sys/kernel/btf/*``) or the ``.BTF`` section of an ELF file."""
        # O_NONBLOCK and regular files only: a FIFO at the path would block forever
        with open(os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC), "rb") as f:
            if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
                raise BTFError(f"BTF {path!r} is not a regular file")
            data = f.read()
        return cls.from_bytes_or_elf(data, base, name=path)

    @classmethod
    def from_bytes_or_elf(cls, data: bytes, base: BTF | None = None, *, name: str = "") -> BTF:
        if data[:4] == b"\x7fELF":
            data = elf_section(data, ".BTF", name or "ELF")
        return cls(data, base, name=name)

    @property
    def strings(self) -> bytes:
        """The string section (a copy, made on first use)."""
        st = self._strings
        if st is None:
            st = self._strings = bytes(self.data[self._sstart : self._send])
        return st

    @property
    def strings_len(self) -> int:
        return self._send - self._sstart

    def _what(self) -> str:
        return f"BTF {self.name!r}" if self.name else "BTF"

    def _step_tables(self, base: BTF | None) -> tuple[list[int], list[int]]:
        """Words per type by kind: ours for the kinds tracekit knows, and for newer kinds
        what the layout section (this blob's, or a split BTF's base's) says."""
        layout = self.layout or (base.layout if base is not None else [])
        if not layout:
            return _FIXED_WORDS, _VLEN_WORDS
        fixed, per_vlen = list(_FIXED_WORDS), list(_VLEN_WORDS)
        for k, (info_sz, elem_sz, _flags) in enumerate(layout):
            if k <= _MAX_KIND or k == 0:
                continue  # known kinds keep their own encoding
            if info_sz % 4 or elem_sz % 4:
                continue  # not steppable: stays refused, as libbpf does
            fixed[k] = 3 + info_sz // 4
            per_vlen[k] = elem_sz // 4
        return fixed, per_vlen

    def _scan(self) -> array[int]:
        """Word index of every type's header; one pass, no decoding.

        The step from one header to the next depends only on the ``info`` word (kind and
        vlen), and vmlinux has only a few hundred distinct ones, so steps are memoized by
        ``info``: the loop body is then one dict hit, which halves the scan time.
        """
        w = self._words
        n = len(w)
        steps = _StepTable(self._fixed_words, self._vlen_words)
        offs = array("I")
        app = offs.append
        i = 0
        try:
            while True:
                app(i)
                i += steps[w[i + 1]]
        except (IndexError, OverflowError):  # OverflowError: an unknown kind's huge step
            pass
        offs.pop()  # the start recorded for the (non-existent) type at the end
        if i != n:
            bad = len(offs) + self.start_id
            raise BTFError(f"{self._what()}: type {bad} is truncated or has an unknown kind")
        return offs

    # --- basic access ----------------------------------------------------------------

    def __len__(self) -> int:
        """Number of type ids, including void and (for split BTF) the base's."""
        return self.start_id + len(self._offsets)

    @property
    def type_count(self) -> int:
        """Types encoded in this blob (excluding void and a split base's types)."""
        return len(self._offsets)

    def string(self, off: int) -> str:
        if off < self.start_str:
            assert self.base is not None
            return self.base.string(off)
        d = self.data
        pos = off - self.start_str + self._sstart
        if pos >= self._send:
            raise BTFError(f"{self._what()}: string offset {off} out of range")
        end = d.find(b"\0", pos, self._send)
        if end < 0:
            raise BTFError(f"{self._what()}: unterminated string at offset {off}")
        return d[pos:end].decode("utf-8", "replace")

    def type(self, tid: int) -> Type:
        """The type with id ``tid`` (decoded on first use, then cached)."""
        if tid < self.start_id:
            if tid == 0:
                return VOID
            if self.base is None or tid < 0:
                raise BTFError(f"{self._what()}: type id {tid} out of range")
            return self.base.type(tid)
        t = self._cache.get(tid)
        if t is None:
            local = tid - self.start_id
            if local >= len(self._offsets):
                raise BTFError(f"{self._what()}: type id {tid} out of range (have {len(self)})")
            t = self._decode(self._offsets[local])
            self._cache[tid] = t
        return t

    __getitem__ = type

    def _offset_of(self, tid: int) -> int:
        """Word offset of local type ``tid``'s header; BTFError for ids past the end."""
        local = tid - self.start_id
        if not 0 <= local < len(self._offsets):
            raise BTFError(f"{self._what()}: type id {tid} out of range (have {len(self)})")
        return self._offsets[local]

    def kind_of(self, tid: int) -> Kind:
        """The kind of ``tid`` without decoding the type."""
        if tid < self.start_id:
            if tid == 0:
                return Kind.UNKN
            if self.base is None or tid < 0:
                raise BTFError(f"{self._what()}: type id {tid} out of range")
            return self.base.kind_of(tid)
        k = (self._words[self._offset_of(tid) + 1] >> 24) & BTF_KIND_MASK
        if k > _MAX_KIND:
            if self._fixed_words[k] != _BAD_STEP:
                return Kind.UNKN  # a newer kind, stepped over by its layout: matches nothing
            # only reachable with offsets from a cache that skipped the scan
            raise BTFError(f"{self._what()}: type {tid} has unknown BTF kind {k}")
        return Kind(k)

    def name_of(self, tid: int) -> str:
        """The name of ``tid`` without decoding the rest of the type."""
        if tid < self.start_id:
            if tid == 0:
                return ""
            if self.base is None or tid < 0:
                raise BTFError(f"{self._what()}: type id {tid} out of range")
            return self.base.name_of(tid)
        return self.string(self._words[self._offset_of(tid)])

    def ids(self) -> range:
        """The type ids encoded in this blob (not the base's)."""
        return range(self.start_id, len(self))

    def types(self) -> Iterator[tuple[int, Type]]:
        """Every (id, type) of this blob, decoding as it goes."""
        for tid in self.ids():
            yield tid, self.type(tid)

    def _decode(self, o: int) -> Type:
        w = self._words
        string = self.string
        name_off, info, su = w[o], w[o + 1], w[o + 2]
        kind = (info >> 24) & BTF_KIND_MASK
        vlen = info & BTF_VLEN_MASK
        try:
            k = Kind(kind)
        except ValueError:
            if self._fixed_words[kind] == _BAD_STEP:
                raise BTFError(f"{self._what()}: unknown BTF kind {kind}") from None
            # A kind newer than tracekit that the layout lets us step over: kept opaque.
            n_words = self._fixed_words[kind] - 3 + vlen * self._vlen_words[kind]
            return Type(Kind.UNKN, string(name_off), size=su, type=su, kflag=bool(info >> 31), raw_kind=kind,
                        raw_vlen=vlen, raw_words=tuple(w[o + 3 : o + 3 + n_words]))
        if k == Kind.UNKN:
            raise BTFError(f"{self._what()}: BTF kind 0 (UNKN) encoded as a type")
        t = Type(k, string(name_off), kflag=bool(info >> 31))
        o += 3
        if k == Kind.INT:
            t.size = su
            v = w[o]
            t.encoding = (v >> 24) & 0x0F
            t.bits_offset = (v >> 16) & 0xFF
            t.bits = v & 0xFF
        elif k in (Kind.STRUCT, Kind.UNION):
            t.size = su
            kf = t.kflag
            mem = t.members
            for j in range(o, o + 3 * vlen, 3):
                off = w[j + 2]
                if kf:
                    mem.append(Member(string(w[j]), w[j + 1], off & 0xFFFFFF, off >> 24))
                else:
                    mem.append(Member(string(w[j]), w[j + 1], off))
        elif k == Kind.ARRAY:
            t.type, t.index_type, t.nelems = w[o], w[o + 1], w[o + 2]
        elif k == Kind.ENUM:
            t.size = su
            conv = _s32 if t.kflag else int
            t.values = [EnumValue(string(w[j]), conv(w[j + 1])) for j in range(o, o + 2 * vlen, 2)]
        elif k == Kind.ENUM64:
            t.size = su
            vals = []
            for j in range(o, o + 3 * vlen, 3):
                v = w[j + 1] | (w[j + 2] << 32)
                if t.kflag and v & (1 << 63):
                    v -= 1 << 64
                vals.append(EnumValue(string(w[j]), v))
            t.values = vals
        elif k == Kind.FUNC_PROTO:
            t.type = su
            t.params = [Param(string(w[j]), w[j + 1]) for j in range(o, o + 2 * vlen, 2)]
        elif k == Kind.FUNC:
            t.type = su
            t.linkage = vlen
        elif k == Kind.VAR:
            t.type = su
            t.linkage = w[o]
        elif k == Kind.DATASEC:
            t.size = su
            t.secinfos = [VarSecinfo(w[j], w[j + 1], w[j + 2]) for j in range(o, o + 3 * vlen, 3)]
        elif k == Kind.DECL_TAG:
            t.type = su
            t.component_idx = _s32(w[o])
        elif k == Kind.FLOAT:
            t.size = su
        else:  # PTR, FWD, TYPEDEF, VOLATILE, CONST, RESTRICT, TYPE_TAG
            t.type = su
        return t

    # --- name look-ups ---------------------------------------------------------------

    @property
    def offsets(self) -> array[int]:
        """Word offset of every type header (what a cache stores to skip the scan)."""
        return self._offsets

    def name_offsets(self) -> bytes:
        """The name offset of every type, as native-endian u32s (built once, C speed)."""
        nb = self._names_b
        if nb is None:
            # map() over a bound __getitem__ runs in C: ~2x faster than itemgetter(*offs)
            nb = array("I", map(self._words.__getitem__, self._offsets)).tobytes()
            self._names_b = nb
        return nb

    def _index(self) -> dict[int, list[int]]:
        """``name_off -> ids`` as a dict (kept for callers that want the whole map)."""
        idx = self._name_index
        if idx is None:
            idx = {}
            start = self.start_id
            for local, no in enumerate(array("I", self.name_offsets())):
                if no:
                    idx.setdefault(no, []).append(start + local)
            self._name_index = idx
        return idx

    def _string_offsets(self, needle: bytes, prefix: bool = False) -> list[int]:
        """Offsets (absolute) of strings equal to ``needle`` (or starting with it)."""
        out = []
        d, lo, hi = self.data, self._sstart, self._send
        delta = 1 + self.start_str - lo
        pat = b"\0" + needle if prefix else b"\0" + needle + b"\0"
        pos = d.find(pat, lo, hi)
        while pos >= 0:
            out.append(pos + delta)
            pos = d.find(pat, pos + 1, hi)
        return out

    def _ids_for_string_offsets(self, offs: list[int]) -> list[int]:
        # A name look-up is a handful of bytes.find over the u32 name array: building a
        # dict of 100k+ names costs more than a lifetime of look-ups does.
        nb = self.name_offsets()
        start = self.start_id
        out: list[int] = []
        for off in offs:
            if not off:
                continue
            pat = struct.pack("=I", off)
            p = nb.find(pat)
            while p >= 0:
                if p & 3:
                    p = nb.find(pat, p + 1)
                    continue
                out.append(start + (p >> 2))
                p = nb.find(pat, p + 4)
        return out

    def find(self, name: str, kind: Kind | None = None) -> list[int]:
        """Ids of every type named ``name`` (optionally of one kind), base types first."""
        ids = self._memo_find.get(name)
        if ids is None:
            ids = self._memo_find[name] = self._find_uncached(name)
        if kind is not None:
            return [i for i in ids if self.kind_of(i) == kind]
        return list(ids)

    def _find_uncached(self, name: str) -> tuple[int, ...]:
        needle = name.encode()
        ids: list[int] = []
        if self.base is not None:
            ids.extend(self.base.find(name))
        # Our types may name strings of the base's table (split BTF) or of our own.
        offs = self._string_offsets(needle)
        b = self.base
        while b is not None:
            offs.extend(b._string_offsets(needle))
            b = b.base
        ids.extend(self._ids_for_string_offsets(offs))
        return tuple(sorted(set(ids)))

    def find_one(self, name: str, kind: Kind | None = None) -> int | None:
        ids = self.find(name, kind)
        return ids[0] if ids else None

    def find_by_essential_name(self, name: str) -> list[int]:
        """Ids of types whose essential name (``___flavor`` stripped) is ``name``."""
        ids = self._memo_ess.get(name)
        if ids is None:
            ids = self._memo_ess[name] = self._find_by_essential_name_uncached(name)
        return list(ids)

    def _find_by_essential_name_uncached(self, name: str) -> tuple[int, ...]:
        needle = name.encode()
        ids: list[int] = []
        if self.base is not None:
            ids.extend(self.base.find_by_essential_name(name))
        offs: list[int] = []
        tables: list[BTF] = [self]
        b = self.base
        while b is not None:
            tables.append(b)
            b = b.base
        for tbl in tables:
            # One pass finds the exact name and its flavours (``name___x``) alike: every
            # exact match is followed by NUL, every flavour by ``___``.
            d, lo, hi = tbl.data, tbl._sstart, tbl._send
            delta = 1 + tbl.start_str - lo
            pat = b"\0" + needle
            n = len(pat)
            pos = d.find(pat, lo, hi)
            while pos >= 0:
                nxt = d[pos + n : pos + n + 3]
                if nxt[:1] == b"\0":
                    offs.append(pos + delta)
                elif nxt == b"___":
                    off = pos + delta
                    if essential_name(tbl.string(off)) == name:
                        offs.append(off)
                pos = d.find(pat, pos + n, hi)
        ids.extend(self._ids_for_string_offsets(offs))
        return tuple(sorted(set(ids)))

    def lookup_memo(self) -> tuple[dict[str, tuple[int, ...]], dict[str, tuple[int, ...]]]:
        """The remembered results of :meth:`find` and :meth:`find_by_essential_name` (by
        name, every kind), for a cache to persist; :meth:`seed_lookups` restores them."""
        return self._memo_find, self._memo_ess

    def seed_lookups(self, find: dict[str, tuple[int, ...]], essential: dict[str, tuple[int, ...]]) -> None:
        """Preload look-up results computed earlier *for these same bytes* (an on-disk cache)."""
        self._memo_find.update(find)
        self._memo_ess.update(essential)

    # --- type algebra ------------------------------------------------------------------

    def skip_mods(self, tid: int) -> int:
        """Follow typedefs and modifiers (const, volatile, restrict, type tags)."""
        for _ in range(MAX_CHAIN):
            if self.kind_of(tid) not in MODIFIER_KINDS:
                return tid
            tid = self.type(tid).type
        raise BTFError(
            f"{self._what()}: typedef/modifier chain longer than {MAX_CHAIN} at type {tid} (a cycle?)"
        )

    def resolve(self, tid: int) -> Type:
        return self.type(self.skip_mods(tid))

    def size_of(self, tid: int) -> int:
        """Byte size of a type, as ``sizeof`` would say.

        Iterative (arrays multiply their element counts), bounded by :data:`MAX_CHAIN`
        steps, and refusing sizes over :data:`MAX_TYPE_SIZE` as the kernel does: hostile
        BTF can neither loop nor make a caller allocate terabytes.
        """
        first = tid
        mult = 1
        for _ in range(MAX_CHAIN):
            t = self.type(tid)
            k = t.kind
            if k in (Kind.INT, Kind.STRUCT, Kind.UNION, Kind.ENUM, Kind.ENUM64, Kind.DATASEC, Kind.FLOAT):
                size = mult * t.size
            elif k == Kind.PTR:
                size = mult * POINTER_SIZE
            elif k == Kind.ARRAY:
                mult *= t.nelems
                if mult > MAX_TYPE_SIZE:
                    raise BTFError(f"{self._what()}: array type {first} has more than {MAX_TYPE_SIZE} elements")
                tid = t.type
                continue
            elif k in MODIFIER_KINDS or k == Kind.VAR:
                tid = t.type
                continue
            else:
                raise BTFError(f"{self._what()}: type {tid} ({k.name}) has no size")
            if size > MAX_TYPE_SIZE:
                raise BTFError(f"{self._what()}: type {first} is {size} bytes, more than BTF allows ({MAX_TYPE_SIZE})")
            return size
        raise BTFError(f"{self._what()}: type chain longer than {MAX_CHAIN} at {tid} (a cycle?)")

    def alignment_of(self, tid: int) -> int:
        """Natural alignment of a type (the largest alignment of its scalars)."""
        return self._align(tid, 0, {})

    def _align(self, tid: int, depth: int, memo: dict[int, int]) -> int:
        # memo: a DAG of structs sharing member types is walked once per type, not once
        # per path (2^depth); depth: a struct that contains itself is an error
        got = memo.get(tid)
        if got is not None:
            return got
        if depth > MAX_CHAIN:
            raise BTFError(f"{self._what()}: types nested deeper than {MAX_CHAIN} at {tid} (a cycle?)")
        t = self.resolve(tid)
        if t.kind in (Kind.INT, Kind.ENUM, Kind.ENUM64, Kind.FLOAT):
            a = min(t.size, 8) or 1
        elif t.kind == Kind.PTR:
            a = POINTER_SIZE
        elif t.kind == Kind.ARRAY:
            a = self._align(t.type, depth + 1, memo)
        elif t.is_composite:
            a = max((self._align(m.type, depth + 1, memo) for m in t.members), default=1)
        else:
            a = 1
        memo[tid] = a
        return a

    def describe(self, tid: int) -> str:
        """A short C-like spelling of a type for error messages.

        Never loops and never explodes: past :data:`MAX_CHAIN` levels (a hostile cycle of
        pointers or modifiers), or once ``_DESCRIBE_BUDGET`` types have been spelled (a
        prototype whose parameters point back at it), the rest is spelled ``...``.  An id
        past the end is a BTFError.
        """
        return self._spell(tid, 0, [_DESCRIBE_BUDGET])

    def _spell(self, tid: int, depth: int, budget: list[int]) -> str:
        t = self.type(tid)
        k = t.kind
        if k == Kind.UNKN:
            return "void"
        budget[0] -= 1
        if (depth >= MAX_CHAIN or budget[0] < 0) and k in (Kind.PTR, Kind.CONST, Kind.VOLATILE, Kind.RESTRICT,
                                                           Kind.ARRAY, Kind.FUNC_PROTO):
            return "..."
        d = depth + 1
        if k == Kind.PTR:
            return self._spell_ref(t.type, d, budget) + " *"
        if k in (Kind.CONST, Kind.VOLATILE, Kind.RESTRICT):
            return f"{k.name.lower()} {self._spell_ref(t.type, d, budget)}"
        if k == Kind.ARRAY:
            return f"{self._spell_ref(t.type, d, budget)}[{t.nelems}]"
        if k in (Kind.STRUCT, Kind.UNION, Kind.ENUM, Kind.ENUM64):
            word = {Kind.STRUCT: "struct", Kind.UNION: "union"}.get(k, "enum")
            return f"{word} {t.name or '(anon)'}"
        if k == Kind.FWD:
            return f"{'union' if t.kflag else 'struct'} {t.name}"
        if k == Kind.FUNC_PROTO:
            args = ", ".join(self._spell_ref(p.type, d, budget) if p.type else "..." for p in t.params[:16])
            if len(t.params) > 16:
                args += ", ..."
            return f"{self._spell_ref(t.type, d, budget)} (*)({args})"
        return t.name or k.name.lower()

    def _spell_ref(self, tid: int, depth: int, budget: list[int]) -> str:
        # a dangling reference inside a type is spelled, not raised: describe() feeds
        # error messages, which must not fail themselves
        try:
            return self._spell(tid, depth, budget)
        except BTFError:
            return f"<bad type id {tid}>"


# --- ELF containers ---------------------------------------------------------------------

_ELF_HDR = {(2, 1): ("<", 0x28, 0x3A, struct.Struct("<IIQQQQIIQQ")),
            (2, 2): (">", 0x28, 0x3A, struct.Struct(">IIQQQQIIQQ")),
            (1, 1): ("<", 0x20, 0x2E, struct.Struct("<IIIIIIIIII")),
            (1, 2): (">", 0x20, 0x2E, struct.Struct(">IIIIIIIIII"))}


def elf_section(data: bytes, want: str, what: str = "ELF") -> bytes:
    """The bytes of section ``want`` of an ELF file (any class and byte order).

    A small bounds-checked reader of the section header table, so a hostile file is a
    BTFError, never a third-party parser's exception, a hang or a huge allocation.
    """
    if len(data) < 0x40:
        raise BTFError(f"{what}: malformed ELF: {len(data)} bytes is too short for an ELF header")
    layout = _ELF_HDR.get((data[4], data[5]))
    if layout is None:
        raise BTFError(f"{what}: malformed ELF: unsupported class {data[4]} / data encoding {data[5]}")
    e, shoff_at, shent_at, shdr = layout
    shoff = struct.unpack_from(e + ("Q" if data[4] == 2 else "I"), data, shoff_at)[0]
    shentsize, shnum, shstrndx = struct.unpack_from(e + "HHH", data, shent_at)
    if shoff == 0 or shentsize < shdr.size:
        raise BTFError(f"{what}: malformed ELF: no usable section header table")
    if shoff + shentsize > len(data):
        raise BTFError(f"{what}: malformed ELF: section headers lie past the end of the file")

    def header(i: int) -> tuple[int, ...]:
        at = shoff + i * shentsize
        if at + shdr.size > len(data):
            raise BTFError(f"{what}: malformed ELF: section header {i} lies past the end of the file")
        return shdr.unpack_from(data, at)

    if shnum == 0:  # extended numbering: the count lives in section 0
        shnum = header(0)[5]
    if shstrndx == 0xFFFF:
        shstrndx = header(0)[6]
    if shoff + shnum * shentsize > len(data):
        raise BTFError(f"{what}: malformed ELF: {shnum} section headers run past the end of the file")
    if not 0 < shstrndx < shnum:
        raise BTFError(f"{what}: malformed ELF: invalid section name table index {shstrndx}")

    def body(h: tuple[int, ...]) -> bytes:
        off, size = h[4], h[5]
        if h[1] == 8:  # SHT_NOBITS: no bytes in the file
            return b""
        if off + size > len(data):
            raise BTFError(f"{what}: malformed ELF: a section runs past the end of the file")
        return data[off : off + size]

    names = body(header(shstrndx))
    needle = want.encode() + b"\0"
    for i in range(1, shnum):
        h = header(i)
        if names[h[0] : h[0] + len(needle)] == needle:
            return body(h)
    raise BTFError(f"{what}: has no {want} section (build with clang -g)")
