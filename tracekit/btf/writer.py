"""Build BTF bytes from :class:`~tracekit.btf.types.Type` objects.

The loader needs to *change* an object's BTF before the kernel sees it (DATASEC sizes,
extern fixups, sanitization for old kernels, ``__arg_ctx`` clones).  The reader is lazy
and read-only, so changes are made on a :class:`BTFBuilder`: every type decoded into a
mutable list indexed by type id, then encoded again.

Strings: :meth:`BTFBuilder.from_btf` keeps the source string table *verbatim* as a
prefix.  String offsets that live outside the type section (``.BTF.ext`` line_info file
and line offsets, CO-RE access strings, section names) therefore stay valid after
re-encoding; new strings are only ever appended.  Because the source table is kept and
names are mapped back to their first occurrence, ``BTF(data) -> from_btf -> encode``
reproduces clang's and pahole's output byte for byte (both emit each string once).
"""

from __future__ import annotations

import struct
import sys
from array import array
from collections.abc import Iterable, Mapping, MutableSequence
from typing import overload

from tracekit.btf.reader import BTF
from tracekit.btf.types import (
    BTF_HEADER_SIZE,
    BTF_HEADER_SIZE_LAYOUT,
    BTF_MAGIC,
    BTF_VERSION,
    KIND_EXTRA_FIXED,
    KIND_EXTRA_PER_VLEN,
    SIZED_KINDS,
    Kind,
    Type,
)
from tracekit.errors import BTFError

_U32 = 0xFFFFFFFF


class _LazyTypes(MutableSequence[Type]):
    """``types`` of a builder made by :meth:`BTFBuilder.from_btf`: decoded on first access.

    An object's BTF drags in big kernel structs (``task_struct`` has hundreds of
    members) that the loader never changes; decoding and re-encoding them would cost
    more than the rest of opening the object.  Entries never touched are copied from the
    source's raw words at encode time, which is byte-identical by construction.
    """

    __slots__ = ("_src", "_items")

    def __init__(self, src: BTF) -> None:
        self._src = src
        self._items: list[Type | None] = [Type(Kind.UNKN)]
        self._items.extend([None] * src.type_count)

    def __len__(self) -> int:
        return len(self._items)

    @overload
    def __getitem__(self, i: int) -> Type: ...
    @overload
    def __getitem__(self, i: slice) -> list[Type]: ...
    def __getitem__(self, i: int | slice) -> Type | list[Type]:
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self._items)))]
        t = self._items[i]
        if t is None:
            if i < 0:
                i += len(self._items)
            # A fresh decode: the reader caches its own Type objects and we hand out
            # mutable ones.
            t = self._src._decode(self._src._offsets[i - 1])
            self._items[i] = t
        return t

    def __setitem__(self, i: int, v: Type) -> None:  # type: ignore[override]  # no slice assignment
        self._items[i] = v

    def __delitem__(self, i: int) -> None:  # type: ignore[override]  # no slice deletion
        if i != len(self._items) - 1 and i != -1:
            # Deleting from the middle renumbers later types; raw entries would keep stale refs.
            raise BTFError("only the last type of a builder can be deleted")
        del self._items[i]

    def insert(self, i: int, v: Type) -> None:
        if i < len(self._items):
            raise BTFError("types can only be appended to a builder (ids are references)")
        self._items.append(v)

    def extend(self, values: Iterable[Type]) -> None:
        self._items.extend(values)

    def untouched_run(self, i: int) -> int:
        """End (exclusive) of the run of never-decoded entries starting at ``i``."""
        items = self._items
        n = len(items)
        while i < n and items[i] is None:
            i += 1
        return i

    def raw_range(self, i: int, j: int) -> array[int] | memoryview:
        """Source words of types ``i`` .. ``j - 1`` (all never decoded)."""
        src = self._src
        offs = src._offsets
        end = offs[j - 1] if j - 1 < len(offs) else len(src._words)
        return src._words[offs[i - 1] : end]


class BTFBuilder:
    """A mutable list of BTF types plus a string table, encodable to the wire format.

    ``types[0]`` is ``void``; ``types[i]`` has type id ``i`` (``base`` ids come first for
    split BTF, and are not stored here: :attr:`start_id` is the first id this builder
    encodes).
    """

    def __init__(self, base: BTF | None = None) -> None:
        self.base = base
        # Split BTF continues the base's id and string numbering (as the kernel does).
        self.start_id = len(base) if base is not None else 1
        self.start_str = (base.start_str + len(base.strings)) if base is not None else 0
        self.types: MutableSequence[Type] = [Type(Kind.UNKN)] if base is None else []
        # A split table starts with a NUL too: name look-ups search for "\0name\0".
        self._strings = bytearray(b"\0")
        self._string_index: dict[bytes, int] | None = None
        self._base_index: dict[bytes, int] | None = None
        self._lookups = 0

    # --- construction ------------------------------------------------------------------

    @classmethod
    def from_btf(cls, btf: BTF) -> BTFBuilder:
        """Decode every type of a non-split ``btf``; keep its string table as a prefix."""
        if btf.base is not None:
            raise BTFError("BTFBuilder.from_btf: split BTF is not supported; build on the base instead")
        b = cls()
        b._strings = bytearray(btf.strings)
        if btf.endian != "<":
            # Raw words of a big-endian blob can't be copied into our little-endian output.
            decode = btf._decode
            b.types.extend(decode(o) for o in btf._offsets)
        else:
            b.types = _LazyTypes(btf)
        return b

    def __len__(self) -> int:
        """Number of type ids (including void and a split base's types)."""
        return self.start_id + len(self.types) - (1 if self.base is None else 0)

    def type(self, tid: int) -> Type:
        if self.base is not None:
            if tid < self.start_id:
                return self.base.type(tid)
            return self.types[tid - self.start_id]
        return self.types[tid]

    __getitem__ = type

    # --- strings -----------------------------------------------------------------------

    def _index(self) -> dict[bytes, int]:
        idx = self._string_index
        if idx is None:
            idx = {}
            pos = 0
            s = bytes(self._strings)
            # First occurrence wins, so re-encoding maps each name to its original offset.
            for part in s.split(b"\0"):
                if part not in idx:
                    idx[part] = pos + self.start_str
                pos += len(part) + 1
            idx.pop(b"", None)
            self._string_index = idx
        return idx

    def _base_strings(self) -> dict[bytes, int]:
        idx = self._base_index
        if idx is None:
            idx = {}
            b = self.base
            chain = []
            while b is not None:
                chain.append(b)
                b = b.base
            for tbl in reversed(chain):  # the innermost base's strings first
                pos = tbl.start_str
                for part in tbl.strings.split(b"\0"):
                    idx.setdefault(part, pos)
                    pos += len(part) + 1
            idx.pop(b"", None)
            self._base_index = idx
        return idx

    def add_string(self, s: str) -> int:
        """Offset of ``s`` in the string table (reusing an existing copy, else appended)."""
        if not s:
            return 0
        raw = s.encode()
        if b"\0" in raw:
            raise BTFError(f"BTF string {s!r} contains a NUL byte")
        if self.base is not None:
            off = self._base_strings().get(raw)
            if off is not None:
                return off
        idx = self._string_index
        if idx is None and self._lookups < 64:
            # A few look-ups (the usual object fixup) are cheaper as C-speed searches than
            # indexing every string; many (re-encoding all of vmlinux) need the index.
            self._lookups += 1
            pos = self._strings.find(b"\0" + raw + b"\0")
            if pos >= 0:
                return pos + 1 + self.start_str
            if self._strings.startswith(raw + b"\0"):
                return self.start_str
            off = len(self._strings) + self.start_str
            self._strings += raw + b"\0"
            return off
        idx = self._index()
        off = idx.get(raw)
        if off is None:
            off = len(self._strings) + self.start_str
            self._strings += raw + b"\0"
            idx[raw] = off
        return off

    @property
    def strings(self) -> bytes:
        return bytes(self._strings)

    # --- types -------------------------------------------------------------------------

    def add_type(self, t: Type) -> int:
        """Append ``t`` and return its new type id (``Kind.UNKN`` only for a type of a kind
        newer than tracekit: ``raw_kind``, ``raw_vlen`` and ``raw_words`` set)."""
        if t.kind == Kind.UNKN and not t.raw_kind:
            raise BTFError("cannot add a void (UNKN) type: id 0 is implicit")
        self.types.append(t)
        return len(self) - 1

    def encode(self, *, layout: bool | Mapping[int, tuple[int, int]] = False) -> bytes:
        """The BTF blob: header, type section, string section (little endian).

        ``layout`` adds the layout section of Linux 7.1+ (a 32-byte header with
        ``layout_off``/``layout_len``; one ``{info_sz, elem_sz, flags}`` per kind, between
        the types and the strings): ``True`` for the kinds tracekit knows, or a mapping
        ``kind -> (info_sz, elem_sz)`` that adds (newer) kinds to it.
        """
        words = array("I")
        app = words.append
        ext = words.extend
        add = self.add_string
        first = 1 if self.base is None else 0
        types = self.types
        lazy = types if isinstance(types, _LazyTypes) else None
        n = first
        count = len(types)
        while n < count:
            if lazy is not None:
                # copy runs of never-decoded types straight from the source words
                end = lazy.untouched_run(n)
                if end > n:
                    ext(lazy.raw_range(n, end))
                    n = end
                    continue
            t = types[n]
            n += 1
            k = t.kind
            try:
                if k == Kind.UNKN:
                    if not t.raw_kind:
                        raise BTFError("void (UNKN) type in the type list")
                    # a kind newer than tracekit: re-encoded as it was read
                    app(add(t.name))
                    app((int(t.kflag) << 31) | ((t.raw_kind & 0x7F) << 24) | (t.raw_vlen & 0xFFFFFF))
                    app(t.size & _U32)
                    ext(t.raw_words)
                    continue
                vlen = t.vlen
                if vlen > 0xFFFF:
                    raise BTFError(f"{k.name} {t.name!r} has {vlen} entries (max 65535)")
                app(add(t.name))
                app((int(t.kflag) << 31) | (int(k) << 24) | vlen)
                # ARRAY keeps its element type in the array record; its size/type word is 0.
                app(0 if k == Kind.ARRAY else (t.size if k in SIZED_KINDS else t.type) & _U32)
                if k == Kind.INT:
                    app(((t.encoding & 0x0F) << 24) | ((t.bits_offset & 0xFF) << 16) | (t.bits & 0xFF))
                elif k in (Kind.STRUCT, Kind.UNION):
                    if t.kflag:
                        for m in t.members:
                            ext((add(m.name), m.type, ((m.bitfield_size & 0xFF) << 24) | (m.bit_offset & 0xFFFFFF)))
                    else:
                        for m in t.members:
                            ext((add(m.name), m.type, m.bit_offset & _U32))
                elif k == Kind.ENUM:
                    for v in t.values:
                        ext((add(v.name), v.value & _U32))
                elif k == Kind.ENUM64:
                    for v in t.values:
                        val = v.value & 0xFFFFFFFFFFFFFFFF
                        ext((add(v.name), val & _U32, val >> 32))
                elif k == Kind.ARRAY:
                    ext((t.type, t.index_type, t.nelems & _U32))
                elif k == Kind.FUNC_PROTO:
                    for p in t.params:
                        ext((add(p.name), p.type))
                elif k == Kind.VAR:
                    app(t.linkage)
                elif k == Kind.DATASEC:
                    for vs in t.secinfos:
                        ext((vs.type, vs.offset & _U32, vs.size & _U32))
                elif k == Kind.DECL_TAG:
                    app(t.component_idx & _U32)
            except (OverflowError, TypeError) as e:
                tid = n - 1 + (self.start_id if self.base is not None else 0)
                raise BTFError(f"cannot encode BTF type {tid} ({k.name} {t.name!r}): {e}") from None
        if words.itemsize != 4:  # pragma: no cover - array('I') is 4 bytes on every supported platform
            raise BTFError("platform unsigned int is not 32 bits")
        if sys.byteorder != "little":  # pragma: no cover
            words.byteswap()
        type_sec = words.tobytes()
        str_sec = bytes(self._strings)
        if not layout:
            hdr = struct.pack(
                "<HBBIIIII", BTF_MAGIC, BTF_VERSION, 0, BTF_HEADER_SIZE, 0, len(type_sec), len(type_sec), len(str_sec)
            )
            return hdr + type_sec + str_sec
        sizes = {int(k): (KIND_EXTRA_FIXED.get(k, 0), KIND_EXTRA_PER_VLEN.get(k, 0)) for k in Kind if k != Kind.UNKN}
        sizes[0] = (0, 0)
        if not isinstance(layout, bool):
            sizes.update({int(k): (int(a), int(b)) for k, (a, b) in layout.items()})
        lay = b"".join(struct.pack("<BBH", *sizes.get(k, (0, 0)), 0) for k in range(max(sizes) + 1))
        hdr = struct.pack("<HBBIIIIIII", BTF_MAGIC, BTF_VERSION, 0, BTF_HEADER_SIZE_LAYOUT, 0, len(type_sec),
                          len(type_sec) + len(lay), len(str_sec), len(type_sec), len(lay))
        return hdr + type_sec + lay + str_sec

    def to_btf(self, *, name: str = "") -> BTF:
        """Encode and parse again: a reader over the result."""
        return BTF(self.encode(), self.base, name=name)
