"""Typed maps: keys and values encoded and decoded from the map's BTF key and value types.

``obj.maps["counts"].typed`` is a :class:`TypedMap` over the kernel map; the
:class:`~tracekit.kernel.maps.Map` itself (``obj.maps["counts"].raw``, or the bytes methods
``obj.maps["counts"].lookup(...)`` that ObjectMap has always forwarded) keeps bytes access.
Typed access is a separate view rather than the default because existing callers of the
bytes methods compare against ``bytes``; a view costs nothing to keep both.

Python forms (decoding):

* integers, enums and pointers -> ``int`` (``bool`` for ``_Bool``), floats -> ``float``;
* ``char`` arrays -> ``str`` up to the first NUL; ``unsigned char``/``__u8`` arrays -> ``bytes``;
  other arrays -> ``list`` at the top level (inside a struct record: ``tuple``, as
  :mod:`tracekit.events.records` decodes them);
* structs and unions -> records (:class:`tracekit.events.records.EventType`): tuples with
  named fields, hashable, so struct keys work as ``dict`` keys;
* per-CPU maps -> :class:`PerCPU`, a list with one value per possible CPU plus
  ``sum()``/``max()``/``min()``.

Encoding accepts the same forms plus: ``bytes`` of the exact size (or shorter for strings and
arrays, zero-padded) for anything; an ``int`` for any integer key; for a struct a ``dict``
(missing fields are zero), a tuple/list in field order, a record decoded from the same
type, or anything with ``_asdict()``.  A map created without BTF types falls back to ints
for 1/2/4/8-byte keys and values and bytes otherwise.
"""

from __future__ import annotations

import gc
import struct
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from tracekit import uapi
from tracekit.btf.reader import BTF
from tracekit.btf.types import INT_BOOL, INT_CHAR, Kind
from tracekit.errors import MapCodecError
from tracekit.events.records import EventType
from tracekit.kernel.maps import ARRAY_TYPES, FD_VALUE_TYPES, Map
from tracekit.uapi import MapType

Writer = Callable[[bytearray, int, Any], None]

_UINT = {1: "B", 2: "H", 4: "I", 8: "Q"}
_SINT = {1: "b", 2: "h", 4: "i", 8: "q"}
#: hash-like maps: elements can be deleted, and LOOKUP_AND_DELETE_BATCH exists for them
_DELETABLE_BATCH = frozenset({MapType.HASH, MapType.PERCPU_HASH, MapType.LRU_HASH, MapType.LRU_PERCPU_HASH})


class PerCPU(list[Any]):
    """The values of one key of a per-CPU map, one per possible CPU (index = CPU number)."""

    def sum(self) -> Any:
        """The total over CPUs: an int/float, or for records a ``dict`` of field-wise sums
        (non-numeric fields keep CPU 0's value).  A dict, not a record, because a sum of
        u32 counters need not fit the field it came from."""
        return _combine(self, sum)

    def max(self) -> Any:
        return _combine(self, max)

    def min(self) -> Any:
        return _combine(self, min)

    def __repr__(self) -> str:
        return f"PerCPU({list.__repr__(self)})"


def _combine(vals: list[Any], fn: Callable[[list[Any]], Any]) -> Any:
    if not vals:
        return 0
    first = vals[0]
    if isinstance(first, (int, float)):
        return fn(list(vals))
    ad = getattr(first, "_asdict", None)
    if ad is None:
        raise TypeError(f"cannot combine per-CPU values of type {type(first).__name__}")
    dicts = [v._asdict() for v in vals]
    out: dict[str, Any] = {}
    for name, v0 in dicts[0].items():
        col = [d[name] for d in dicts]
        out[name] = fn(col) if all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in col) else v0
    return out


# --- codecs -------------------------------------------------------------------------------


class Codec:
    """Encodes Python values to the exact bytes of one BTF type and decodes them back."""

    def __init__(self, btf: BTF | None, type_id: int, size: int, what: str = "value") -> None:
        self.btf = btf
        self.type_id = btf.skip_mods(type_id) if btf is not None and type_id else 0
        self.size = size
        self.what = what
        self.event_type: EventType | None = None
        if self.type_id and btf is not None and btf.size_of(self.type_id) != size:
            # The BTF type does not describe these bytes (should not happen for a map the
            # loader created): raw bytes are the only honest decoding.
            self.type_id = 0
        if self.type_id and btf is not None:
            self._write = _writer(btf, self.type_id, what)
            self._decode = self._typed_decoder(btf, self.type_id)
        else:
            self._write, self._decode = _untyped(size, what)

    def _typed_decoder(self, btf: BTF, tid: int) -> Callable[[bytes], Any]:
        t = btf.type(tid)
        if t.is_composite:
            et = EventType.from_btf(btf, tid)
            self.event_type = et
            return et.decode
        return _reader(btf, tid)

    @property
    def type_name(self) -> str:
        if self.btf is None or not self.type_id:
            return f"{self.size} bytes"
        return self.btf.describe(self.type_id)

    def decode(self, raw: bytes) -> Any:
        return self._decode(raw)

    def decode_many(self, raws: list[bytes]) -> list[Any]:
        """Many values at once: records through one ``iter_unpack`` over the joined bytes
        (as ring-buffer batches are decoded), plain ints likewise; the rest one by one."""
        if len(raws) > 1:
            if self.event_type is not None:
                return self.event_type.decode_batch(raws)
            st = self._bulk
            if st is not None:
                return [x for (x,) in st.iter_unpack(b"".join(raws))]
        dec = self._decode
        return [dec(r) for r in raws]

    @property
    def _bulk(self) -> struct.Struct | None:
        # ints of 1/2/4/8 bytes (not _Bool, whose decoder returns a bool)
        btf = self.btf
        if btf is None or not self.type_id:
            return struct.Struct("<" + _UINT[self.size]) if self.size in _UINT else None
        t = btf.resolve(self.type_id)
        if t.kind in (Kind.INT, Kind.ENUM, Kind.ENUM64) and not (t.kind == Kind.INT and t.encoding & INT_BOOL):
            codes = _SINT if t.is_signed else _UINT
            return struct.Struct("<" + codes[t.size]) if t.size in codes else None
        return None

    def encode(self, value: Any) -> bytes:
        if isinstance(value, (bytes, bytearray, memoryview)):
            raw = bytes(value)
            if len(raw) == self.size:
                return raw
            if not (len(raw) < self.size and self.btf is not None and self.type_id
                    and self.btf.kind_of(self.type_id) == Kind.ARRAY):
                # only strings and byte arrays are naturally shorter than their room
                raise MapCodecError(f"{self.what}: {len(raw)} bytes given, {self.type_name} is {self.size} bytes")
        et = self.event_type
        if et is not None and isinstance(value, tuple) and type(value) is et.record_class:
            # A record decoded from this type: its tuple items are the wire items, so one
            # pack gives the bytes back (holes become zeros).
            return et.struct.pack(*value).ljust(self.size, b"\0")
        buf = bytearray(self.size)
        self._write(buf, 0, value)
        return bytes(buf)


def _untyped(size: int, what: str) -> tuple[Writer, Callable[[bytes], Any]]:
    if size in _UINT:
        return _int_writer(size, False, what), lambda b: int.from_bytes(b[:size], "little")

    def write(buf: bytearray, off: int, v: Any) -> None:
        if isinstance(v, int):
            buf[off : off + size] = _int_bytes(v, size, False, what)
            return
        raise MapCodecError(f"{what}: the map has no BTF type for its {size}-byte elements: give bytes")

    return write, bytes


def _int_bytes(v: int, size: int, signed: bool, what: str) -> bytes:
    # Accept both the signed and unsigned range whatever the C type says: -1 for a u32 is
    # the usual way to write 0xffffffff, and BPF code often stores unsigned into s64.
    lo, hi = -(1 << (size * 8 - 1)), 1 << (size * 8)
    if not lo <= v < hi:
        raise MapCodecError(f"{what}: {v} does not fit in {size} bytes")
    return (v & (hi - 1)).to_bytes(size, "little")


def _int_writer(size: int, signed: bool, what: str) -> Writer:
    def write(buf: bytearray, off: int, v: Any) -> None:
        if isinstance(v, (bytes, bytearray, memoryview)) and len(v) == size:
            buf[off : off + size] = v
            return
        try:
            iv = int(v)
        except (TypeError, ValueError):
            raise MapCodecError(f"{what}: expected an int, got {type(v).__name__} {v!r}") from None
        buf[off : off + size] = _int_bytes(iv, size, signed, what)

    return write


def _is_char(btf: BTF, tid: int) -> bool:
    t = btf.resolve(tid)
    return t.kind == Kind.INT and t.size == 1 and (t.name == "char" or bool(t.encoding & INT_CHAR))


def _is_u8(btf: BTF, tid: int) -> bool:
    t = btf.resolve(tid)
    return t.kind == Kind.INT and t.size == 1 and not t.encoding & (INT_CHAR | INT_BOOL) and t.name != "char"


def _reader(btf: BTF, tid: int) -> Callable[[bytes], Any]:
    """Decoder of a non-composite type (top-level map keys/values)."""
    t = btf.resolve(tid)
    k = t.kind
    if k in (Kind.INT, Kind.ENUM, Kind.ENUM64, Kind.PTR):
        size = t.size if k != Kind.PTR else 8
        signed = t.is_signed
        if k == Kind.INT and t.encoding & INT_BOOL:
            return lambda b: b[0] != 0
        codes = _SINT if signed else _UINT
        if size in codes:
            st = struct.Struct("<" + codes[size])
            return lambda b: st.unpack_from(b)[0]
        return lambda b: int.from_bytes(b[:size], "little", signed=signed)
    if k == Kind.FLOAT:
        fst = struct.Struct({2: "<e", 4: "<f", 8: "<d"}[t.size])
        return lambda b: fst.unpack_from(b)[0]
    if k == Kind.ARRAY:
        n = t.nelems
        if _is_char(btf, t.type):
            return lambda b: bytes(b[:n]).split(b"\0", 1)[0].decode("utf-8", "replace")
        if _is_u8(btf, t.type):
            return lambda b: bytes(b[:n])
        esz = btf.size_of(t.type)
        et = btf.resolve(t.type)
        sub = EventType.from_btf(btf, btf.skip_mods(t.type)).decode if et.is_composite else _reader(btf, t.type)
        return lambda b: [sub(b[i * esz : (i + 1) * esz]) for i in range(n)]
    if t.is_composite:
        return EventType.from_btf(btf, btf.skip_mods(tid)).decode
    size = btf.size_of(tid)
    return lambda b: bytes(b[:size])


def _writer(btf: BTF, tid: int, what: str) -> Writer:
    """A function writing a Python value of type ``tid`` into a buffer at an offset."""
    t = btf.resolve(tid)
    k = t.kind
    desc = btf.describe(tid)
    if k in (Kind.INT, Kind.ENUM, Kind.ENUM64, Kind.PTR):
        size = t.size if k != Kind.PTR else 8
        if k in (Kind.ENUM, Kind.ENUM64):
            names = {v.name: v.value for v in t.values}
            iw = _int_writer(size, t.is_signed, what)

            def write_enum(buf: bytearray, off: int, v: Any) -> None:
                if isinstance(v, str):  # an enumerator by name
                    if v not in names:
                        raise MapCodecError(f"{what}: {desc} has no enumerator {v!r} (has {', '.join(names)})")
                    v = names[v]
                iw(buf, off, v)

            return write_enum
        return _int_writer(size, t.is_signed, what)
    if k == Kind.FLOAT:
        fst = struct.Struct({2: "<e", 4: "<f", 8: "<d"}[t.size])

        def write_float(buf: bytearray, off: int, v: Any) -> None:
            fst.pack_into(buf, off, float(v))

        return write_float
    if k == Kind.ARRAY:
        return _array_writer(btf, t, desc, what)
    if t.is_composite:
        return _composite_writer(btf, btf.skip_mods(tid), what)
    size = btf.size_of(tid)

    def write_bytes(buf: bytearray, off: int, v: Any) -> None:
        raw = bytes(v)
        if len(raw) > size:
            raise MapCodecError(f"{what}: {len(raw)} bytes do not fit in {desc} ({size} bytes)")
        buf[off : off + len(raw)] = raw

    return write_bytes


def _array_writer(btf: BTF, t: Any, desc: str, what: str) -> Writer:
    n = t.nelems
    esz = btf.size_of(t.type)
    char = _is_char(btf, t.type)
    byteish = char or _is_u8(btf, t.type)
    elem = _writer(btf, t.type, what)

    def write(buf: bytearray, off: int, v: Any) -> None:
        if isinstance(v, str):
            if not char:
                raise MapCodecError(f"{what}: {desc} is not a char array: give a list, not a string")
            v = v.encode()
            if len(v) >= n:
                # C strings: keep room for the NUL the BPF side relies on
                raise MapCodecError(f"{what}: {len(v)}-byte string is too long for {desc} (at most {n - 1} bytes)")
        if isinstance(v, (bytes, bytearray, memoryview)) and (byteish or len(v) == n * esz):
            if len(v) > n * esz:
                raise MapCodecError(f"{what}: {len(v)} bytes do not fit in {desc}")
            buf[off : off + len(v)] = bytes(v)
            return
        items = list(v)
        if len(items) > n:
            raise MapCodecError(f"{what}: {len(items)} items do not fit in {desc}")
        for i, x in enumerate(items):
            elem(buf, off + i * esz, x)

    return write


def _flat_members(btf: BTF, tid: int, base_bits: int = 0) -> list[tuple[str, int, int, int]]:
    """``(name, bit offset, bitfield bits or 0, type id)`` of a struct's named members in
    declaration order, with C11 anonymous struct/union members flattened (as the record
    classes of :mod:`tracekit.events.records` do)."""
    out: list[tuple[str, int, int, int]] = []
    t = btf.type(tid)
    for m in t.members:
        bo = base_bits + m.bit_offset
        mt = btf.resolve(m.type)
        if not m.name and mt.is_composite:
            out.extend(_flat_members(btf, btf.skip_mods(m.type), bo))
            continue
        bits = m.bitfield_size
        if not bits and mt.kind == Kind.INT and (mt.bits != mt.size * 8 or mt.bits_offset):
            bits, bo = mt.bits, bo + mt.bits_offset
        out.append((m.name, bo, bits, m.type))
    return out


def _composite_writer(btf: BTF, tid: int, what: str) -> Writer:
    t = btf.type(tid)
    is_union = t.kind == Kind.UNION
    size = t.size
    members = _flat_members(btf, tid)
    # field name -> (byte offset, writer) or (bit offset, bits) for bitfields
    plain: dict[str, tuple[int, Writer]] = {}
    bitf: dict[str, tuple[int, int]] = {}
    order: list[str] = []
    for name, bo, bits, mtid in members:
        if bits:
            bitf[name] = (bo, bits)
        else:
            plain[name] = (bo // 8, _writer(btf, mtid, f"{what}.{name}"))
        order.append(name)
    tname = btf.describe(tid)

    def field_of(name: str) -> str:
        if name in plain or name in bitf:
            return name
        if name.endswith("_") and (name[:-1] in plain or name[:-1] in bitf):
            return name[:-1]  # record attribute of a member named like a Python keyword
        raise MapCodecError(f"{what}: {tname} has no field {name!r} (fields: {', '.join(order)})")

    def write(buf: bytearray, off: int, v: Any) -> None:
        if isinstance(v, (bytes, bytearray, memoryview)):
            if len(v) > size:
                raise MapCodecError(f"{what}: {len(v)} bytes do not fit in {tname} ({size} bytes)")
            buf[off : off + len(v)] = bytes(v)
            return
        pairs: list[tuple[str, Any]]
        if isinstance(v, Mapping):
            pairs = [(field_of(str(n)), x) for n, x in v.items()]
        elif hasattr(v, "_asdict"):
            pairs = [(field_of(n), x) for n, x in v._asdict().items()]
        elif isinstance(v, (tuple, list)):
            if len(v) > len(order):
                raise MapCodecError(f"{what}: {len(v)} items for {tname}, which has {len(order)} fields")
            pairs = list(zip(order, v))
        else:
            raise MapCodecError(f"{what}: give {tname} as a dict, a tuple in field order or bytes, "
                           f"not {type(v).__name__}")
        if is_union and len(pairs) > 1:
            raise MapCodecError(f"{what}: {tname} is a union: set one member, not {len(pairs)}")
        for name, x in pairs:
            if name in plain:
                o, w = plain[name]
                w(buf, off + o, x)
            else:
                bo, bits = bitf[name]
                iv = int(x)
                if not -(1 << (bits - 1)) <= iv < (1 << bits):
                    raise MapCodecError(f"{what}.{name}: {iv} does not fit in a {bits}-bit field")
                mask = (1 << bits) - 1
                first, last = bo // 8, (bo + bits + 7) // 8
                shift = bo - first * 8
                cur = int.from_bytes(buf[off + first : off + last], "little")
                cur = (cur & ~(mask << shift)) | ((iv & mask) << shift)
                buf[off + first : off + last] = cur.to_bytes(last - first, "little")

    return write


# --- the typed view -------------------------------------------------------------------------


class TypedMap:
    """Typed access to a kernel :class:`~tracekit.kernel.maps.Map` (see the module doc).

    Element methods mirror a ``dict``: ``m[key]``, ``m[key] = value``, ``del m[key]``,
    ``key in m``, ``len(m)``, ``iter(m)`` (keys).  ``keys()``/``values()``/``items()``
    return list snapshots (so deleting while looping is safe); ``items()`` uses
    BPF_MAP_LOOKUP_BATCH where the kernel has it for the map type.  ``pop_all()`` (or
    ``items(reset=True)``) reads and resets for interval tools.
    """

    def __init__(self, raw: Map, btf: BTF | None = None, key_type_id: int = 0, value_type_id: int = 0) -> None:
        self.raw = raw
        name = raw.name or "map"
        self.key_codec = Codec(btf, key_type_id, raw.key_size, f"map {name!r} key")
        self.value_codec = Codec(btf, value_type_id, raw.value_size, f"map {name!r} value")
        self.per_cpu = raw.per_cpu
        self.is_array = raw.type in ARRAY_TYPES
        # prog/perf-event/cgroup arrays and array-of-maps hold fds: slots are emptied by
        # delete, not by writing zeros (which the kernel would read as fd 0)
        self._fd_array = self.is_array and raw.type in FD_VALUE_TYPES
        vc = self.value_codec
        self._array_value = bool(vc.btf is not None and vc.type_id and vc.btf.kind_of(vc.type_id) == Kind.ARRAY)

    @classmethod
    def for_map(cls, raw: Map) -> TypedMap:
        """Typed access to a map this process did not load (``Map.from_pin``/``from_id``),
        with the key/value types from the BTF the kernel keeps for it (BPF_OBJ_GET_INFO_BY_FD).
        A map created without BTF gets ints/bytes by size."""
        from tracekit.errors import BTFError
        from tracekit.kernel.syscalls import bpf as _bpf

        info = raw.info()
        if not info.btf_id or not (info.btf_key_type_id or info.btf_value_type_id):
            return cls(raw)
        fd = _bpf.btf_get_fd_by_id(info.btf_id)
        try:
            data = _bpf.btf_data(fd.fd)
        finally:
            fd.close()
        try:
            btf = BTF(data, name=f"BTF id {info.btf_id} of map {raw.name!r}")
        except BTFError:
            # split BTF (a module's) needs its base; a loader's object BTF never is
            from tracekit.kernel.btf import vmlinux

            btf = BTF(data, vmlinux(), name=f"BTF id {info.btf_id} of map {raw.name!r}")
        return cls(raw, btf, info.btf_key_type_id, info.btf_value_type_id)

    @property
    def map(self) -> Map:
        return self.raw

    @property
    def name(self) -> str:
        return self.raw.name

    @property
    def type(self) -> MapType | int:
        return self.raw.type

    def __repr__(self) -> str:
        return (f"<TypedMap {self.raw.name!r} {self.key_codec.type_name} -> {self.value_codec.type_name}"
                f"{' per-CPU' if self.per_cpu else ''}>")

    # -- encoding ---------------------------------------------------------------------------

    def encode_key(self, key: Any) -> bytes | None:
        if self.raw.key_size == 0:
            return None  # queue/stack/bloom: no key
        return self.key_codec.encode(key)

    def decode_key(self, raw: bytes) -> Any:
        return self.key_codec.decode(raw)

    def encode_value(self, value: Any) -> bytes | list[bytes]:
        # A list for a per-CPU map means one value per CPU, unless the value type is itself
        # an array (then wrap the per-CPU values in PerCPU to say so).
        if isinstance(value, PerCPU) or (self.per_cpu and isinstance(value, list) and not self._array_value):
            if not self.per_cpu:
                raise MapCodecError(f"map {self.raw.name!r} is not per-CPU: give one value, not a PerCPU list")
            return [self.value_codec.encode(v) for v in value]
        return self.value_codec.encode(value)

    def decode_value(self, raw: bytes | list[bytes]) -> Any:
        if isinstance(raw, list):
            dec = self.value_codec.decode
            return PerCPU(dec(r) for r in raw)
        return self.value_codec.decode(raw)

    # -- elements -----------------------------------------------------------------------------

    def lookup(self, key: Any, default: Any = None) -> Any:
        """The decoded value for ``key`` (a :class:`PerCPU` list for per-CPU maps), or ``default``."""
        raw = self.raw.lookup(self.encode_key(key))
        return default if raw is None else self.decode_value(raw)

    get = lookup

    def update(self, key: Any, value: Any, flags: int = uapi.BPF_ANY) -> None:
        """Set ``key``; for per-CPU maps ``value`` is one value for every CPU, or a list
        with one per possible CPU."""
        self.raw.update(self.encode_key(key), self.encode_value(value), flags)

    def delete(self, key: Any) -> bool:
        """Delete ``key`` (False if absent).  Array elements cannot be deleted: use :meth:`zero`."""
        return self.raw.delete(self.encode_key(key))

    def zero(self, key: Any) -> None:
        """Set ``key``'s value (all CPUs) to zero bytes."""
        self.raw.update(self.encode_key(key), bytes(self.raw.value_size))

    def __getitem__(self, key: Any) -> Any:
        raw = self.raw.lookup(self.encode_key(key))
        if raw is None:
            raise KeyError(key)
        return self.decode_value(raw)

    def __setitem__(self, key: Any, value: Any) -> None:
        self.update(key, value)

    def __delitem__(self, key: Any) -> None:
        if not self.delete(key):
            raise KeyError(key)

    def __contains__(self, key: Any) -> bool:
        return self.raw.lookup(self.encode_key(key)) is not None

    # -- iteration ----------------------------------------------------------------------------

    def keys(self) -> list[Any]:
        dec = self.key_codec.decode
        return [dec(k) for k in list(self.raw.keys())]

    def __iter__(self) -> Iterator[Any]:
        return iter(self.keys())

    def __len__(self) -> int:
        if self.is_array:
            return self.raw.max_entries
        return sum(1 for _ in self.raw)

    def values(self) -> list[Any]:
        return [v for _, v in self.items()]

    def items(self, *, reset: bool = False) -> list[tuple[Any, Any]]:
        """``(key, value)`` pairs, one snapshot (batched where the kernel supports it).

        ``reset=True`` reads and resets in one pass, see :meth:`pop_all`.
        """
        if reset:
            return self.pop_all()
        return self._decode_pairs(self.raw.lookup_batch())

    def as_dict(self) -> dict[Any, Any]:
        return dict(self.items())

    def _decode_pairs(self, pairs: list[tuple[bytes, Any]]) -> list[tuple[Any, Any]]:
        if not pairs:
            return []
        # Thousands of new tuples would trigger young-generation collections over and over
        # (as in tracekit.events.records.decode_strided); nothing here creates cycles.
        enabled = gc.isenabled()
        gc.disable()
        try:
            keys = self.key_codec.decode_many([k for k, _ in pairs])
            if self.per_cpu:
                dv = self.decode_value
                return list(zip(keys, [dv(v) for _, v in pairs]))
            return list(zip(keys, self.value_codec.decode_many([v for _, v in pairs])))
        finally:
            if enabled:
                gc.enable()

    def pop_all(self) -> list[tuple[Any, Any]]:
        """Read every element and reset the map, for interval reports.

        Hash maps (hash, percpu hash, LRU variants): BPF_MAP_LOOKUP_AND_DELETE_BATCH, so an
        update racing with the read lands either in this report or the next, never lost;
        kernels or types without it fall back to per-key lookup-and-delete (or lookup then
        delete).  Arrays cannot lose elements: they are read in one batch and then set to
        zero in one batch, so increments made between the two calls are lost (BCC's
        ``zero()`` has the same window; keep counters in a hash map where that matters).
        """
        if self._fd_array:
            got = self.items()
            for k in range(self.raw.max_entries):
                self.raw.delete(k)
            return got
        if self.is_array:
            pairs = self.raw.lookup_batch()
            if pairs:
                zero = bytes(self.raw.value_size)
                self.raw.update_batch([k for k, _ in pairs], [zero] * len(pairs))
            return self._decode_pairs(pairs)
        return self._decode_pairs(self.raw.lookup_and_delete_batch())

    def clear(self) -> None:
        """Delete every element (arrays: set every element to zero; fd arrays: empty every slot)."""
        if self._fd_array:
            for k in range(self.raw.max_entries):
                self.raw.delete(k)  # False for an empty slot
            return
        if self.is_array:
            n = self.raw.max_entries
            zero = bytes(self.raw.value_size)
            self.raw.update_batch(list(range(n)), [zero] * n)
            return
        self.raw.lookup_and_delete_batch()


def typed(raw: Map, btf: BTF | None = None, key_type_id: int = 0, value_type_id: int = 0) -> TypedMap:
    """A :class:`TypedMap` over ``raw`` with the given BTF types (none: ints/bytes by size)."""
    return TypedMap(raw, btf, key_type_id, value_type_id)


__all__ = ["Codec", "PerCPU", "TypedMap", "typed"]
