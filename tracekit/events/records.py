"""Decode ring-buffer records with the layout the BPF program's BTF declares.

:meth:`EventType.from_btf` compiles a C struct into

* ONE precompiled :class:`struct.Struct` for the whole record: scalars (ints, enums,
  pointers, floats) get their own format codes, ``char`` arrays become ``Ns`` and
  everything that cannot be a flat format item (nested structs and unions, arrays of
  structs, bitfield storage, 128-bit ints) is kept as a raw ``Ns`` chunk; holes are ``x``
  padding.  So decoding a record is one C call, and decoding N fixed-size records is one
  ``struct.iter_unpack`` over a joined buffer.
* a generated record class: a ``tuple`` subclass with ``__slots__ = ()`` whose named
  fields are properties.  Plain fields are ``operator.itemgetter`` (C speed); the rest
  are decoded **lazily on attribute access**: ``char`` arrays -> ``str`` up to the first
  NUL (UTF-8, errors replaced), nested structs -> nested records, unions -> a record with
  every member decoded from the same bytes, bitfields -> shifted and masked ints, arrays
  -> tuples.  Lazy decoding is what keeps batch decoding near the speed of plain tuples;
  the cost is that indexing (``rec[i]``) yields the *wire* items (bytes for strings) while
  attributes yield the decoded values.  ``repr()`` and ``_asdict()`` use attributes.
* :meth:`EventType.eager`: a variant for consumers that read the strings of every record
  (a tool printing them): its top-level ``char`` arrays are decoded while a batch is
  decoded, in a few C-level passes over the whole batch, and read as plain slots.

Conventions: arrays of ``char`` decode to ``str``; arrays of other 1-byte ints
(``unsigned char``, ``__u8``) stay ``bytes``; enums decode to their integer value; a
flexible array member decodes to ``()`` (its bytes are past the struct).
"""

from __future__ import annotations

import gc
import keyword
import operator
import re
import struct
from collections.abc import Callable, Sequence
from itertools import chain
from typing import Any, Literal

from tracekit.btf.reader import BTF
from tracekit.btf.types import INT_BOOL, INT_SIGNED, Kind
from tracekit.errors import BTFError, TracekitError


class DecodeError(TracekitError, ValueError):
    """A record cannot be decoded with the event type (too short, unsupported layout)."""


_INT_CODES = {(1, False): "B", (1, True): "b", (2, False): "H", (2, True): "h",
              (4, False): "I", (4, True): "i", (8, False): "Q", (8, True): "q"}

# Names a C member cannot take in a record.  Records are tuples, but their fields are
# class-level properties that shadow tuple attributes, so a member named "count" or
# "index" is reachable as ev.count / ev.index (tuple.count/index are not used on records);
# only the record protocol's own names are renamed (with a trailing "_").
_RESERVED = frozenset({"_fields", "_asdict", "_replace", "_make", "_type"})
#: how deep structs may nest inside structs (and anonymous members inside anonymous
#: members): a hostile BTF whose struct contains itself ends in a DecodeError
_MAX_NESTING = 32
_MAX_STEPS = 1 << 10


def _cstr(raw: bytes) -> str:
    # partition: one C call for "up to the first NUL, or all" (cheaper than find + slice)
    return raw.partition(b"\0")[0].decode("utf-8", "replace")


def _str_getter(i: int) -> Callable[[tuple], str]:
    # The property's getter does the work itself (no second Python call into _cstr): the
    # lazy char-array fields are the per-event cost of tools that print them (issue 13).
    def get(self: tuple) -> str:
        return self[i].partition(b"\0")[0].decode("utf-8", "replace")

    return get


def _pyname(name: str, taken: set[str], idx: int) -> str:
    n = name or f"_{idx}"
    if keyword.iskeyword(n) or n in _RESERVED or not n.isidentifier():
        n = (n if n.isidentifier() else "".join(c if c.isalnum() else "_" for c in n)) + "_"
    while n in taken:
        n += "_"
    taken.add(n)
    return n


class _Item:
    """One flat format item of the record struct at byte ``offset``."""

    __slots__ = ("offset", "size", "fmt", "nslots")

    def __init__(self, offset: int, size: int, fmt: str, nslots: int = 1) -> None:
        self.offset, self.size, self.fmt, self.nslots = offset, size, fmt, nslots


class _Compiler:
    """Turns one struct/union type into format items and field getters."""

    def __init__(self, btf: BTF, cache: dict[int, EventType], depth: int = 0) -> None:
        self.btf = btf
        self.cache = cache
        self.e = btf.endian
        self.depth = depth  # struct nesting of the type being compiled
        # anonymous members are expanded inline (not cached): a hostile DAG of them could
        # take 2^depth steps, so the expansion of one type has a budget
        self.steps = 0

    def _step(self) -> None:
        self.steps += 1
        if self.steps > _MAX_STEPS:
            raise DecodeError(f"anonymous members expand to more than {_MAX_STEPS} steps")

    # -- values decoded lazily from raw bytes (unions, arrays of structs, ...) --------------

    def value_decoder(self, tid: int) -> Callable[[bytes], Any]:
        """A function decoding a value of type ``tid`` from the start of a bytes object."""
        btf = self.btf
        t = btf.resolve(tid)
        k = t.kind
        if k in (Kind.INT, Kind.ENUM, Kind.ENUM64, Kind.PTR, Kind.FLOAT):
            code = self.scalar_code(tid)
            if code is None:
                signed = t.is_signed
                e: Literal["little", "big"] = "little" if self.e == "<" else "big"
                return lambda b: int.from_bytes(b[: t.size], e, signed=signed)
            st = struct.Struct(self.e + code)
            n = st.size
            # a member that (in hostile or odd BTF) runs past its union's bytes reads as
            # zero-padded, like a short record does
            return lambda b: st.unpack_from(b)[0] if len(b) >= n else st.unpack(bytes(b).ljust(n, b"\0"))[0]
        if k == Kind.ARRAY:
            if self.is_char(t.type):
                return lambda b: _cstr(b[: t.nelems])
            if self.scalar_code(t.type) == "B" and btf.resolve(t.type).kind == Kind.INT:
                return lambda b: bytes(b[: t.nelems])
            esz = btf.size_of(t.type)
            sub = self.value_decoder(t.type)
            n = t.nelems if esz else 0  # zero-sized elements carry nothing to decode
            return lambda b: tuple(sub(b[i * esz : (i + 1) * esz]) for i in range(n))
        if k in (Kind.STRUCT, Kind.UNION):
            et = EventType._from_btf(btf, self.btf.skip_mods(tid), self.cache, self.depth + 1)
            return et.decode
        raise DecodeError(f"cannot decode BTF {k.name} type {t.name!r} (id {tid})")

    def scalar_code(self, tid: int) -> str | None:
        t = self.btf.resolve(tid)
        k = t.kind
        if k == Kind.PTR:
            return "Q"
        if k == Kind.FLOAT:
            return {4: "f", 8: "d", 2: "e"}.get(t.size)
        if k == Kind.INT:
            if t.encoding & INT_BOOL and t.size == 1:
                return "?"
            return _INT_CODES.get((t.size, bool(t.encoding & INT_SIGNED)))
        if k in (Kind.ENUM, Kind.ENUM64):
            return _INT_CODES.get((t.size, t.is_signed))
        return None

    def is_char(self, tid: int) -> bool:
        """Plain ``char`` (possibly through typedefs/const): arrays of it are strings."""
        t = self.btf.resolve(tid)
        return t.kind == Kind.INT and t.size == 1 and (t.name == "char" or bool(t.encoding & 2))

    # -- the record layout -----------------------------------------------------------------

    def compile(self, tid: int) -> tuple[list[_Item], list[tuple[str, Any]]]:
        """Items (sorted, non-overlapping) and fields ``(name, slot_ref or getter-maker)``."""
        t = self.btf.type(tid)
        items: list[_Item] = []
        fields: list[tuple[str, Any]] = []
        if t.kind == Kind.UNION:
            # Every member overlays the same bytes: keep them raw, decode each on access.
            items.append(_Item(0, t.size, f"{t.size}s"))
            taken: set[str] = set()
            for i, m in enumerate(t.members):
                fields.extend(self._union_member_fields(m, 0, 0, taken, i))
            return items, fields
        self._struct_members(tid, 0, items, fields, set())
        return items, fields

    def _union_member_fields(self, m: Any, chunk_item: int, base: int, taken: set[str],
                             i: int, depth: int = 0) -> list[tuple[str, Any]]:
        """Fields for member ``m`` read from raw chunk ``chunk_item`` (member offset ``base``)."""
        btf = self.btf
        if depth > _MAX_NESTING:
            raise DecodeError(f"anonymous members nested deeper than {_MAX_NESTING} levels (a cycle?)")
        self._step()
        off = m.bit_offset // 8 - base
        if m.name == "" and btf.resolve(m.type).is_composite:
            inner = btf.resolve(m.type)
            out: list[tuple[str, Any]] = []
            for j, im in enumerate(inner.members):
                sub = type(im)(im.name, im.type, im.bit_offset + m.bit_offset, im.bitfield_size)
                out.extend(self._union_member_fields(sub, chunk_item, base, taken, j, depth + 1))
            return out
        name = _pyname(m.name, taken, i)
        bits, shift, signed = self._bitfield(m)
        if bits:
            sh = m.bit_offset - base * 8 + shift
            nbytes = (sh + bits + 7) // 8
            return [(name, ("lazy", chunk_item, _bitfield_getter(sh, bits, signed, nbytes)))]
        dec = self.value_decoder(m.type)
        size = btf.size_of(m.type)
        return [(name, ("lazy", chunk_item, lambda raw, d=dec, o=off, s=size: d(raw[o : o + s])))]

    def _bitfield(self, m: Any) -> tuple[int, int, bool]:
        """(bits, extra shift, signed) if ``m`` is a bitfield, else (0, 0, False)."""
        t = self.btf.resolve(m.type)
        if m.bitfield_size:
            return m.bitfield_size, 0, t.is_signed
        if t.kind == Kind.INT and (t.bits != t.size * 8 or t.bits_offset):
            return t.bits, t.bits_offset, t.is_signed  # old-style: bits live in the INT type
        return 0, 0, False

    def _struct_members(self, tid: int, base_bits: int, items: list[_Item],
                        fields: list[tuple[str, Any]], taken: set[str], depth: int = 0) -> None:
        btf = self.btf
        if depth > _MAX_NESTING:
            raise DecodeError(f"anonymous structs nested deeper than {_MAX_NESTING} levels (a cycle?)")
        self._step()
        t = btf.type(tid)
        bitfields: list[tuple[str, int, int, bool]] = []  # (name, abs bit offset, bits, signed)
        for i, m in enumerate(t.members):
            bo = base_bits + m.bit_offset
            mt = btf.resolve(m.type)
            bits, shift, signed = self._bitfield(m)
            if bits:
                name = _pyname(m.name, taken, i)
                bitfields.append((name, bo + shift, bits, signed))
                fields.append((name, None))  # placeholder keeps declaration order
                continue
            if bo % 8:
                raise DecodeError(f"member {m.name!r} of {t.name!r} is not byte aligned")
            off = bo // 8
            if m.name == "" and mt.kind == Kind.STRUCT:
                self._struct_members(btf.skip_mods(m.type), bo, items, fields, taken, depth + 1)  # C11 anonymous struct
                continue
            if m.name == "" and mt.kind == Kind.UNION:
                idx = len(items)
                items.append(_Item(off, mt.size, f"{mt.size}s"))
                for j, um in enumerate(mt.members):
                    fields.extend(self._union_member_fields(um, idx, 0, taken, j))
                continue
            name = _pyname(m.name, taken, i)
            self._member(name, m.type, off, items, fields)
        if bitfields:
            self._bitfield_runs(bitfields, items, fields)

    def _member(self, name: str, tid: int, off: int, items: list[_Item], fields: list[tuple[str, Any]]) -> None:
        btf = self.btf
        t = btf.resolve(tid)
        code = self.scalar_code(tid)
        if code is not None:
            fields.append((name, ("slot", len(items))))
            items.append(_Item(off, struct.calcsize("<" + code), code))
            return
        size = btf.size_of(tid) if t.kind != Kind.FWD else 0
        if t.kind == Kind.ARRAY:
            if t.nelems == 0:
                fields.append((name, ("const", ())))  # flexible array: bytes beyond the struct
                return
            if self.is_char(t.type):
                fields.append((name, ("str", len(items))))
                items.append(_Item(off, t.nelems, f"{t.nelems}s"))
                return
            et = btf.resolve(t.type)
            ecode = self.scalar_code(t.type)
            if ecode == "B" and et.kind == Kind.INT:
                fields.append((name, ("slot", len(items))))  # unsigned byte array: bytes
                items.append(_Item(off, t.nelems, f"{t.nelems}s"))
                return
            if ecode is not None:
                fields.append((name, ("tuple", len(items), t.nelems)))
                items.append(_Item(off, size, f"{t.nelems}{ecode}", t.nelems))
                return
        if size == 0:
            fields.append((name, ("const", None)))
            return
        dec = self.value_decoder(tid)
        fields.append((name, ("lazy", len(items), dec)))
        items.append(_Item(off, size, f"{size}s"))

    def _bitfield_runs(self, bitfields: list[tuple[str, int, int, bool]], items: list[_Item],
                       fields: list[tuple[str, Any]]) -> None:
        if self.e != "<":
            raise DecodeError("bitfields of big-endian BTF are not supported")
        # Merge the byte ranges the bitfields occupy into raw chunks, then read each field
        # from its chunk as a little-endian integer.
        spans = sorted((bo // 8, (bo + bits + 7) // 8) for _, bo, bits, _ in bitfields)
        runs: list[list[int]] = []
        for a, b in spans:
            if runs and a <= runs[-1][1]:
                runs[-1][1] = max(runs[-1][1], b)
            else:
                runs.append([a, b])
        run_item: list[int] = []
        for a, b in runs:
            run_item.append(len(items))
            items.append(_Item(a, b - a, f"{b - a}s"))
        where = {name: i for i, (name, spec) in enumerate(fields) if spec is None}
        for name, bo, bits, signed in bitfields:
            for (a, b), idx in zip(runs, run_item):
                if a * 8 <= bo < b * 8:
                    fields[where[name]] = (name, ("lazy", idx, _bitfield_getter(bo - a * 8, bits, signed, b - a)))
                    break


def _bitfield_getter(shift: int, bits: int, signed: bool, nbytes: int) -> Callable[[bytes], int]:
    mask = (1 << bits) - 1
    sign = 1 << (bits - 1)

    def get(raw: bytes) -> int:
        v = (int.from_bytes(raw[:nbytes], "little") >> shift) & mask
        return v - (1 << bits) if signed and v & sign else v

    return get


def _asdict_value(v: Any) -> Any:
    if isinstance(v, tuple):
        ad = getattr(v, "_asdict", None)
        if ad is not None:
            return ad()
        return tuple(_asdict_value(x) for x in v)
    return v


def _make_record_class(type_name: str, fields: list[tuple[str, Any]]) -> type:
    names = tuple(n for n, _ in fields)
    ns: dict[str, Any] = {"__slots__": (), "_fields": names, "__match_args__": names}
    for name, spec in fields:
        kind = spec[0]
        if kind == "slot":
            ns[name] = property(operator.itemgetter(spec[1]), doc=f"field {name}")
        # (mypy cannot type a lambda whose defaults bind this iteration's values: ignore[misc])
        elif kind == "str":
            ns[name] = property(_str_getter(spec[1]), doc=f"field {name} (char array)")
        elif kind == "tuple":
            ns[name] = property(lambda self, i=spec[1], n=spec[2]: tuple(self[i : i + n]), doc=f"field {name}")  # type: ignore[misc]
        elif kind == "lazy":
            ns[name] = property(lambda self, i=spec[1], d=spec[2]: d(self[i]), doc=f"field {name}")  # type: ignore[misc]
        elif kind == "const":
            ns[name] = property(lambda self, v=spec[1]: v, doc=f"field {name}")  # type: ignore[misc]
        else:  # pragma: no cover - compiler invariant
            raise AssertionError(kind)

    getters = [operator.attrgetter(n) for n in names]

    def __repr__(self: tuple) -> str:
        return f"{type_name}(" + ", ".join(f"{n}={g(self)!r}" for n, g in zip(names, getters)) + ")"

    def _asdict(self: tuple) -> dict[str, Any]:
        """Field name -> decoded value; nested records become dicts too."""
        return {n: _asdict_value(g(self)) for n, g in zip(names, getters)}

    ns["__repr__"] = __repr__
    ns["_asdict"] = _asdict
    cls_name = type_name if type_name.isidentifier() and not keyword.iskeyword(type_name) else "event"
    return type(cls_name, (tuple,), ns)


class EventType:
    """A compiled decoder for one C struct (or union) of a BPF object's BTF.

    ``size`` is ``sizeof`` the type; ``record_class`` the generated class; ``fields``
    the attribute names (C member names; Python keywords get a trailing ``_``).
    """

    size: int

    def __init__(self, name: str, size: int, fmt: str, record_class: type, type_id: int = 0) -> None:
        self.name = name
        self.size = size
        self.type_id = type_id
        self.format = fmt
        self.struct = struct.Struct(fmt)
        self.record_class = record_class
        self.fields: tuple[str, ...] = record_class._fields  # type: ignore[attr-defined]
        self._body = fmt[1:]
        self._endian = fmt[0]
        self._strided: dict[tuple[int, int], struct.Struct] = {}
        # set by _from_btf: the slot layout and field specs a variant is derived from
        self._layout: list[tuple[int, int, str, int]] = []
        self._specs: list[tuple[str, Any]] = []
        self._variants: dict[tuple[str, ...], EventType] = {}

    def __repr__(self) -> str:
        return f"<EventType {self.name} size={self.size} fields={len(self.fields)}>"

    # -- construction ----------------------------------------------------------------------

    @classmethod
    def from_btf(cls, btf: BTF, type_id_or_name: int | str) -> EventType:
        """Compile struct/union ``type_id_or_name`` (a type id, or a name: ``"event"``)."""
        if isinstance(type_id_or_name, str):
            tid = _find_composite(btf, type_id_or_name)
        else:
            tid = type_id_or_name
        return cls._from_btf(btf, btf.skip_mods(tid), {})

    @classmethod
    def _from_btf(cls, btf: BTF, tid: int, cache: dict[int, EventType], depth: int = 0) -> EventType:
        got = cache.get(tid)
        if got is not None:
            return got
        if depth > _MAX_NESTING:
            raise DecodeError(f"BTF type {tid}: structs nested deeper than {_MAX_NESTING} levels "
                              "(a struct that contains itself?)")
        t = btf.type(tid)
        if not t.is_composite:
            raise DecodeError(f"BTF type {tid} ({t.kind.name} {t.name!r}) is not a struct or union: "
                              "an event type must be one")
        items, fields = _Compiler(btf, cache, depth).compile(tid)
        parts: list[str] = []
        cur = 0
        # Items were created in member order (bitfield runs last): lay them out by offset
        # and map each item's creation index to its first tuple slot.
        slot_of_item = [0] * len(items)
        slot = 0
        layout: list[tuple[int, int, str, int]] = []  # (offset, size, format item, slots), by offset
        for idx in sorted(range(len(items)), key=lambda j: items[j].offset):
            it = items[idx]
            if it.offset < cur:
                raise DecodeError(f"{t.name!r}: overlapping members at offset {it.offset}")
            if it.offset > cur:
                parts.append(f"{it.offset - cur}x")
            parts.append(it.fmt)
            layout.append((it.offset, it.size, it.fmt, it.nslots))
            slot_of_item[idx] = slot
            slot += it.nslots
            cur = it.offset + it.size
        if cur > t.size:
            raise DecodeError(f"{t.name!r}: members end at {cur}, past the size {t.size}")
        # Item indices -> tuple slots (arrays of scalars take several slots).
        fixed: list[tuple[str, Any]] = []
        for name, spec in fields:
            if spec[0] in ("slot", "str", "tuple", "lazy"):
                spec = (spec[0], slot_of_item[spec[1]], *spec[2:])
            fixed.append((name, spec))
        fmt = btf.endian + "".join(parts)
        name = t.name or f"anon_{tid}"
        rc = _make_record_class(name, fixed)
        et = cls(name, t.size, fmt, rc, tid)
        et._layout = layout
        et._specs = fixed
        cache[tid] = et
        return et

    @classmethod
    def for_map(cls, source: Any, map_name: str | None = None) -> EventType:
        """The event type of a ring-buffer map, found by convention (:func:`find_event_type`)."""
        btf = _btf_of(source)
        return cls.from_btf(btf, find_event_type(btf, map_name))

    def eager(self, *fields: str) -> EventType:
        """A variant of this type that decodes char-array ``fields`` (default: every one the
        record has at top level) to ``str`` while it decodes the records, not on access.

        For consumers that read those strings from every record (a tool printing them):
        a batch's strings are cut at their NUL and decoded in a few C-level passes over
        the whole batch, and the attributes become plain slot reads; lazily, each access
        is a Python-level call (~100 ns).  Values are the same as the lazy type's; indexing
        differs: the eager strings are the *last* slots of the tuple, as ``str``.
        """
        key = tuple(fields)
        got = self._variants.get(key)
        if got is not None:
            return got
        strs = {n: spec[1] for n, spec in self._specs if spec[0] == "str"}
        names = list(fields) if fields else list(strs)
        for n in names:
            if n not in strs:
                raise DecodeError(f"{self.name}: {n!r} is not a char-array field (those are: "
                                  f"{', '.join(strs) or 'none'}); only they can be decoded eagerly")
        if not names:
            self._variants[key] = self
            return self
        et: EventType = _EagerEventType(self, {strs[n] for n in names})
        self._variants[key] = et
        return et

    # -- decoding --------------------------------------------------------------------------

    def decode(self, buf: bytes | bytearray | memoryview) -> Any:
        """One record (extra trailing bytes are ignored).

        A record shorter than the struct is decoded as if zero-padded: programs commonly
        emit only the used prefix of a large event (execsnoop sends ``args`` up to
        ``args_size``), and the missing tail then reads as zeros / empty strings.
        """
        try:
            return tuple.__new__(self.record_class, self.struct.unpack_from(buf))
        except struct.error:
            if len(buf) >= self.struct.size:
                raise DecodeError(f"record of {len(buf)} bytes does not decode as {self.name}") from None
            padded = bytes(buf) + bytes(self.struct.size - len(buf))
            return tuple.__new__(self.record_class, self.struct.unpack_from(padded))

    def _strided_struct(self, skip: int, stride: int) -> struct.Struct:
        key = (skip, stride)
        st = self._strided.get(key)
        if st is None:
            used = self.struct.size
            pad = stride - skip - used
            if pad < 0:
                raise DecodeError(f"records of {stride - skip} bytes are shorter than {self.name} "
                                  f"({self.size} bytes)")
            st = struct.Struct(f"{self._endian}{skip}x{self._body}{pad}x")
            self._strided[key] = st
        return st

    def decode_strided(self, blob: bytes, skip: int, stride: int, count: int) -> list[Any]:
        """``count`` records laid ``stride`` bytes apart in ``blob``, each ``skip`` bytes in."""
        st = self._strided_struct(skip, stride)
        if len(blob) != count * stride:
            blob = blob[: count * stride]
        # Each record is a GC-tracked tuple: building thousands triggers a young-generation
        # collection every ~700 allocations, which more than halves throughput.  The list is
        # built in one C call with the GIL held, so pausing the collector around it is
        # invisible to other code; the allocation count carries over to the next check.
        # map(cls, ...) calls the class directly (type -> tuple's tp_new): ~20% cheaper per
        # record than map(tuple.__new__, repeat(cls), ...), which packs an argument tuple
        # and re-slices it for every record.  The class defines no __new__/__init__.
        enabled = gc.isenabled()
        gc.disable()
        try:
            return list(map(self.record_class, st.iter_unpack(blob)))
        finally:
            if enabled:
                gc.enable()

    def decode_batch(self, bufs: Sequence[bytes | bytearray | memoryview]) -> list[Any]:
        """Many records; fixed-size records are decoded by one ``iter_unpack``."""
        n = len(bufs)
        if n > 1:
            ln = len(bufs[0])
            if ln >= self.struct.size and all(len(b) == ln for b in bufs):
                return self.decode_strided(b"".join(bufs), 0, ln, n)
        dec = self.decode
        return [dec(b) for b in bufs]

    __call__ = decode


class _EagerEventType(EventType):
    """:meth:`EventType.eager`: the base type with some char arrays decoded up front.

    The tuple holds the base type's slots minus the eager strings (their bytes become
    ``x`` padding in the struct), then the strings in offset order.  A strided batch is
    decoded by ``iter_unpack`` (the rest) and ONE regular expression over the blob that
    captures each string up to its NUL (a lookahead ``(?=([^\\0]{0,w}))`` then ``.{w}``:
    fixed width, so the match stays aligned with the records); the captured bytes are
    joined with NUL separators, decoded as one UTF-8 string and split at the NULs again.
    That equals decoding each string alone: no captured string holds a NUL, and a NUL
    byte ends any incomplete UTF-8 sequence before it (its replacement is the same).
    """

    def __init__(self, base: EventType, str_slots: set[int]) -> None:
        parts: list[str] = []
        cur = 0
        slot = 0
        new_slot: dict[int, int] = {}  # base slot -> slot in the eager tuple
        strs: list[tuple[int, int, int]] = []  # (offset, width, base slot), by offset
        for off, size, fmt, nslots in base._layout:
            if off > cur:
                parts.append(f"{off - cur}x")
            if slot in str_slots:
                parts.append(f"{size}x")
                strs.append((off, size, slot))
            else:
                parts.append(fmt)
                for j in range(nslots):
                    new_slot[slot + j] = len(new_slot)
            slot += nslots
            cur = off + size
        if base.struct.size > cur:  # the base format ends at its last item: keep its size
            parts.append(f"{base.struct.size - cur}x")
        nscal = len(new_slot)
        for k, (_, _, s) in enumerate(strs):
            new_slot[s] = nscal + k
        specs: list[tuple[str, Any]] = []
        for name, spec in base._specs:
            if spec[0] == "str" and spec[1] in str_slots:
                specs.append((name, ("slot", new_slot[spec[1]])))
            elif spec[0] in ("slot", "str", "tuple", "lazy"):
                specs.append((name, (spec[0], new_slot[spec[1]], *spec[2:])))
            else:
                specs.append((name, spec))
        fmt = base._endian + "".join(parts)
        super().__init__(base.name, base.size, fmt, _make_record_class(base.name, specs), base.type_id)
        self._layout, self._specs = [], specs  # a variant is not derived from again
        self._variants = base._variants
        self._strs = [(off, w) for off, w, _ in strs]
        self._regex: dict[tuple[int, int], re.Pattern[bytes]] = {}

    def __repr__(self) -> str:
        return f"<EventType {self.name} size={self.size} fields={len(self.fields)} eager>"

    def eager(self, *fields: str) -> EventType:
        raise DecodeError(f"{self.name}: already an eager variant: call eager() on the base type")

    def decode(self, buf: bytes | bytearray | memoryview) -> Any:
        n = self.struct.size
        if len(buf) < n:  # zero-padded, as the base type decodes a short record
            buf = bytes(buf) + bytes(n - len(buf))
        try:
            vals = self.struct.unpack_from(buf)
        except struct.error:
            raise DecodeError(f"record of {len(buf)} bytes does not decode as {self.name}") from None
        strs = tuple([bytes(buf[o : o + w]).partition(b"\0")[0].decode("utf-8", "replace") for o, w in self._strs])
        return tuple.__new__(self.record_class, vals + strs)

    __call__ = decode

    def _strided_regex(self, skip: int, stride: int) -> re.Pattern[bytes]:
        key = (skip, stride)
        rx = self._regex.get(key)
        if rx is None:
            self._strided_struct(skip, stride)  # the same length check
            pat = []
            cur = -skip
            for off, w in self._strs:
                pat.append(b".{%d}(?=([^\x00]{0,%d})).{%d}" % (off - cur, w, w))
                cur = off + w
            pat.append(b".{%d}" % (stride - skip - cur))
            rx = self._regex[key] = re.compile(b"(?s)" + b"".join(pat))
        return rx

    def decode_strided(self, blob: bytes, skip: int, stride: int, count: int) -> list[Any]:
        st = self._strided_struct(skip, stride)
        rx = self._strided_regex(skip, stride)
        if len(blob) != count * stride:
            blob = blob[: count * stride]
        if count <= 1:
            # one record (an isolated event): the regex and join cost more than they save
            return [self.decode(blob[skip:stride])] if count else []
        found = rx.findall(blob)
        k = len(self._strs)
        # findall gives a list of bytes for one group, of tuples for several
        joined = b"\0".join(found if k == 1 else chain.from_iterable(found))
        flat = iter(joined.decode("utf-8", "replace").split("\0"))
        enabled = gc.isenabled()
        gc.disable()  # see EventType.decode_strided
        try:
            # each record: the scalars' tuple + a tuple of its k strings, one C call each
            return list(map(self.record_class, map(operator.add, st.iter_unpack(blob), zip(*[flat] * k))))
        finally:
            if enabled:
                gc.enable()


def _find_composite(btf: BTF, name: str) -> int:
    ids = [i for i in btf.find(name) if btf.kind_of(i) in (Kind.STRUCT, Kind.UNION)]
    if not ids:
        ids = [i for i in btf.find(name) if btf.kind_of(i) == Kind.TYPEDEF
               and btf.resolve(i).is_composite]
    if not ids:
        raise BTFError(f"no struct or union named {name!r} in the BTF (is the type referenced by the "
                       "program? clang only emits BTF for types that are used)")
    return ids[0]


def _btf_of(source: Any) -> BTF:
    if isinstance(source, BTF):
        return source
    btf = getattr(source, "btf", None)
    if isinstance(btf, BTF):
        return btf
    spec = getattr(source, "spec", None)
    if spec is not None and isinstance(getattr(spec, "btf", None), BTF):
        return spec.btf
    raise TypeError(f"expected a BTF or an object/spec with .btf, got {type(source).__name__}")


def find_event_type(source: Any, map_name: str | None = None) -> int:
    """The BTF type id of the records of ring buffer ``map_name``, found by convention.

    In order:

    1. a global variable ``__event_<map_name>`` (tracekit's marker, e.g.
       ``struct my_event *__event_events __attribute__((unused));``): its type, through
       one pointer;
    2. a global variable ``__event`` (one event type for the whole object);
    3. a struct named ``<map_name>_event``;
    4. a struct named ``event`` (the libbpf-tools convention).

    A variable is the robust marker: clang emits BTF only for types a program uses in a
    global, a signature or a CO-RE relocation, not for the type of a local variable, so
    ``struct event`` used only through ``bpf_ringbuf_reserve`` may be missing from BTF.
    """
    btf = _btf_of(source)
    var_names = ([f"__event_{map_name}"] if map_name else []) + ["__event"]
    for vn in var_names:
        for vid in btf.find(vn, Kind.VAR):
            tid = btf.skip_mods(btf.type(vid).type)
            if btf.kind_of(tid) == Kind.PTR:
                tid = btf.skip_mods(btf.type(tid).type)
            if btf.kind_of(tid) in (Kind.STRUCT, Kind.UNION):
                return tid
    struct_names = ([f"{map_name}_event"] if map_name else []) + ["event"]
    for sn in struct_names:
        for tid in btf.find(sn):
            if btf.kind_of(tid) in (Kind.STRUCT, Kind.UNION) and btf.type(tid).members:
                return tid
    tried = ", ".join([*(f"variable {v}" for v in var_names), *(f"struct {s}" for s in struct_names)])
    raise BTFError(f"cannot find the event type of ring buffer {map_name or '?'!r}: looked for {tried}. "
                   f"Declare e.g. 'struct my_event *__event_{map_name or 'events'} __attribute__((unused));' "
                   "in the BPF program, or pass the type name explicitly")


__all__ = ["DecodeError", "EventType", "find_event_type"]
