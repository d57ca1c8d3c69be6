"""Global variables of a BPF object as Python attributes: ``obj.rodata.targ_pid = 42``.

Each data section (``.rodata``, ``.data``, ``.bss``, ``.data.foo``...) is one array map
with a single value; its DATASEC in the object's BTF says where each variable lives and
what type it has.  Before load a view is backed by a private ``bytearray`` (the section's
initial contents) so ``.rodata`` knobs can be set; after load it is re-backed by the map's
mmap, so ``.bss``/``.data`` reads and writes go straight to the kernel's memory while
programs run, and ``.rodata`` (frozen) becomes read-only.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from typing import Any

from tracekit.btf.reader import BTF
from tracekit.btf.types import INT_BOOL, INT_CHAR, Kind
from tracekit.errors import BTFError, ClosedError, TracekitError

_INT_FMT = {1: "b", 2: "h", 4: "i", 8: "q"}
#: nesting of struct/array values decoded by one codec (hostile BTF cannot recurse forever)
_MAX_NESTING = 32


class Codec:
    """Reads and writes one BTF-typed value at an offset of a buffer."""

    __slots__ = ("btf", "tid", "size", "kind", "desc", "depth", "_elem", "_event")

    def __init__(self, btf: BTF, tid: int, _depth: int = 0) -> None:
        if _depth > _MAX_NESTING:
            raise BTFError(f"type {tid} nests arrays deeper than {_MAX_NESTING} levels")
        self.btf = btf
        self.tid = btf.skip_mods(tid)
        self.size = btf.size_of(tid)
        self.kind = btf.kind_of(self.tid)
        self.desc = btf.describe(tid)
        self.depth = _depth
        # built on first use, then kept: an array of a million structs compiles once
        self._elem: Codec | None = None
        self._event: Any = None

    def _element(self, t: Any) -> Codec:
        if self._elem is None:
            self._elem = Codec(self.btf, t.type, self.depth + 1)
        return self._elem

    def _is_char_array(self) -> bool:
        t = self.btf.type(self.tid)
        if t.kind != Kind.ARRAY:
            return False
        e = self.btf.resolve(t.type)
        return e.kind == Kind.INT and e.size == 1 and (bool(e.encoding & INT_CHAR) or e.name in ("char", "unsigned char", "signed char"))

    def get(self, buf: Any, off: int) -> Any:
        if off < 0 or off + self.size > len(buf):
            raise BTFError(f"{self.desc} at offset {off} ({self.size} bytes) lies outside its {len(buf)}-byte section")
        t = self.btf.type(self.tid)
        k = self.kind
        if k in (Kind.INT, Kind.ENUM, Kind.ENUM64, Kind.PTR):
            fmt = _INT_FMT.get(self.size)
            if fmt is None:
                # 16-byte ints, and odd sizes a hand-written or hostile BTF may declare
                # (a 3-byte int): read as many bytes as the type says, little endian
                return int.from_bytes(bytes(buf[off : off + self.size]), "little",
                                      signed=k != Kind.PTR and t.is_signed)
            if not (k != Kind.PTR and t.is_signed):
                fmt = fmt.upper()
            v = struct.unpack_from("<" + fmt, buf, off)[0]
            if k == Kind.INT and t.encoding & INT_BOOL:
                return bool(v)
            return v
        if k == Kind.FLOAT and self.size in (2, 4, 8):
            return struct.unpack_from({2: "<e", 4: "<f", 8: "<d"}[self.size], buf, off)[0]
        if k == Kind.ARRAY:
            if self._is_char_array():
                raw = bytes(buf[off : off + self.size])
                return raw.split(b"\0", 1)[0].decode("utf-8", "replace")
            elem = self._element(t)
            # zero-sized elements carry no data: an empty list, however many are declared
            n = t.nelems if elem.size else 0
            return [elem.get(buf, off + i * elem.size) for i in range(n)]
        if k in (Kind.STRUCT, Kind.UNION):
            if self._event is None:
                from tracekit.events.records import EventType

                self._event = EventType.from_btf(self.btf, self.tid)
            return self._event.decode(bytes(buf[off : off + self.size]))
        return bytes(buf[off : off + self.size])

    def encode(self, value: Any) -> bytes:
        t = self.btf.type(self.tid)
        k = self.kind
        if isinstance(value, (bytes, bytearray, memoryview)):
            raw = bytes(value)
            if len(raw) > self.size:
                raise ValueError(f"{len(raw)} bytes do not fit in {self.desc} ({self.size} bytes)")
            return raw.ljust(self.size, b"\0")
        if k in (Kind.INT, Kind.ENUM, Kind.ENUM64, Kind.PTR):
            v = int(value)
            signed = k != Kind.PTR and t.is_signed
            try:
                return v.to_bytes(self.size, "little", signed=signed)
            except OverflowError:
                raise ValueError(f"{value!r} does not fit in {self.desc}") from None
        if k == Kind.FLOAT and self.size in (2, 4, 8):
            return struct.pack({2: "<e", 4: "<f", 8: "<d"}[self.size], float(value))
        if k == Kind.ARRAY:
            if self._is_char_array() and isinstance(value, str):
                raw = value.encode()
                if len(raw) >= self.size:
                    raise ValueError(f"{value!r} is too long for {self.desc} (room for {self.size - 1} bytes + NUL)")
                return raw.ljust(self.size, b"\0")
            elem = self._element(t)
            items = list(value)
            if len(items) > t.nelems:
                raise ValueError(f"{len(items)} items do not fit in {self.desc}")
            return b"".join(elem.encode(x) for x in items).ljust(self.size, b"\0")
        raise TypeError(f"set {self.desc} from bytes")


class GlobalData:
    """Attribute access to the variables of one data section."""

    # set through object.__setattr__ (our __setattr__ writes variables)
    _section: str
    _buf: Any
    _writable: bool
    _closed: bool
    _vars: dict[str, tuple[int, Codec]]

    def __init__(self, section: str, btf: BTF | None, datasec_type_id: int, data: bytes, *, writable: bool = True) -> None:
        object.__setattr__(self, "_section", section)
        object.__setattr__(self, "_buf", bytearray(data))
        object.__setattr__(self, "_writable", writable)
        object.__setattr__(self, "_closed", False)
        vars_: dict[str, tuple[int, Codec]] = {}
        try:
            self._collect(vars_, section, btf, datasec_type_id, len(data))
        except (struct.error, IndexError, KeyError, ValueError, OverflowError) as e:
            # Object.__init__ builds these views from the object's BTF right after parsing:
            # whatever the checks below did not foresee is still malformed input
            raise BTFError(f"{section}: malformed global data description in the object's BTF: {e}") from None
        object.__setattr__(self, "_vars", vars_)

    @staticmethod
    def _collect(vars_: dict[str, tuple[int, Codec]], section: str, btf: BTF | None, datasec_type_id: int,
                 size: int) -> None:
        if btf is not None and datasec_type_id:
            sec = btf.type(datasec_type_id)
            if sec.kind != Kind.DATASEC:
                raise BTFError(f"{section}: BTF type {datasec_type_id} is a {sec.kind.name}, not its DATASEC")
            for si in sec.secinfos:
                v = btf.type(si.type)
                if v.kind != Kind.VAR or not v.name:
                    continue
                codec = Codec(btf, v.type)
                # Checked here, at open: a variable outside its section's bytes would
                # otherwise fail on every read (and write past the end of the map value).
                if si.offset + codec.size > size:
                    raise BTFError(
                        f"{section}: variable {v.name!r} at offset {si.offset} ({codec.size} bytes) "
                        f"lies outside the {size}-byte section; the object's BTF and ELF disagree"
                    )
                vars_[v.name] = (si.offset, codec)

    # --- lifecycle (used by the loader) -----------------------------------------------------

    def _rebind(self, buf: Any, writable: bool) -> None:
        """Switch the backing store to the loaded map's mmap."""
        object.__setattr__(self, "_buf", buf)
        object.__setattr__(self, "_writable", writable)

    def _detach(self) -> None:
        """The object was closed: keep the last values readable, refuse writes."""
        buf = self._buf
        try:
            snapshot = bytearray(buf[:])
        except (ValueError, TypeError):  # mmap already closed
            snapshot = bytearray()
        object.__setattr__(self, "_buf", snapshot)
        object.__setattr__(self, "_closed", True)

    def _bytes(self) -> bytes:
        return bytes(self._buf[:])

    # --- user API ----------------------------------------------------------------------------

    @property
    def section(self) -> str:
        return self._section

    def variables(self) -> list[str]:
        return list(self._vars)

    def __iter__(self) -> Iterator[str]:
        return iter(self._vars)

    def __contains__(self, name: object) -> bool:
        return name in self._vars

    def __dir__(self) -> list[str]:
        return [*self._vars, "section", "variables", "as_dict"]

    def as_dict(self) -> dict[str, Any]:
        # through _lookup, not getattr: dunder names (tracekit's own ``__event_<map>``
        # markers) are refused by __getattr__ but are variables all the same
        return {n: self[n] for n in self._vars}

    def _lookup(self, name: str) -> tuple[int, Codec]:
        try:
            return self._vars[name]
        except KeyError:
            known = ", ".join(self._vars) or "none"
            raise AttributeError(f"{self._section} has no variable {name!r} (variables: {known})") from None

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        off, codec = self._lookup(name)
        return codec.get(self._buf, off)

    def __getitem__(self, name: str) -> Any:
        off, codec = self._lookup(name)
        return codec.get(self._buf, off)

    def __setattr__(self, name: str, value: Any) -> None:
        off, codec = self._lookup(name)
        if self._closed:
            raise ClosedError(f"cannot set {self._section}.{name}: the object is closed")
        if not self._writable:
            raise TracekitError(
                f"cannot set {self._section}.{name} after load: {self._section} is frozen "
                "(read-only); set .rodata knobs before obj.load()"
            )
        raw = codec.encode(value)
        self._buf[off : off + len(raw)] = raw

    __setitem__ = __setattr__

    def __repr__(self) -> str:
        try:
            body = ", ".join(f"{k}={v!r}" for k, v in self.as_dict().items())
        except Exception:  # a repr must not raise
            body = "..."
        return f"<GlobalData {self._section} {body}>"
