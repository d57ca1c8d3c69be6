"""The BTF type model shared by the reader, writer, CO-RE engine, linker and decoder.

Types refer to each other by *type id* (an int), exactly as in the wire format: that keeps
decoding lazy (a type is decoded only when asked for), makes the writer a straight
re-encoding, and lets split BTF (module on top of vmlinux) share ids with its base.

One flat, mutable :class:`Type` class covers every kind.  Sanitization for old kernels
rewrites a type's kind in place (VAR -> INT, DATASEC -> STRUCT, ...), which a class per
kind would make awkward.
"""

from __future__ import annotations

from enum import IntEnum

from tracekit._record import Record

BTF_MAGIC = 0xEB9F
BTF_VERSION = 1
BTF_HEADER_SIZE = 24
#: the header with ``layout_off``/``layout_len`` (kernels built with pahole 1.31+, Linux 7.1+)
BTF_HEADER_SIZE_LAYOUT = 32
#: bits of a type's ``info`` word: vlen 0-23, kind 24-30, kind_flag 31 (the kind and vlen
#: fields grew in 2026 into bits that had to be zero, so older BTF reads the same)
BTF_KIND_MASK = 0x7F
BTF_VLEN_MASK = 0xFFFFFF


class Kind(IntEnum):
    UNKN = 0  # only type id 0, "void"
    INT = 1
    PTR = 2
    ARRAY = 3
    STRUCT = 4
    UNION = 5
    ENUM = 6
    FWD = 7
    TYPEDEF = 8
    VOLATILE = 9
    CONST = 10
    RESTRICT = 11
    FUNC = 12
    FUNC_PROTO = 13
    VAR = 14
    DATASEC = 15
    FLOAT = 16
    DECL_TAG = 17
    TYPE_TAG = 18
    ENUM64 = 19


#: bytes following the 12-byte common header, fixed part, by kind
KIND_EXTRA_FIXED: dict[int, int] = {Kind.INT: 4, Kind.ARRAY: 12, Kind.VAR: 4, Kind.DECL_TAG: 4}
#: bytes per ``vlen`` entry following the header, by kind
KIND_EXTRA_PER_VLEN: dict[int, int] = {
    Kind.STRUCT: 12,
    Kind.UNION: 12,
    Kind.ENUM: 8,
    Kind.FUNC_PROTO: 8,
    Kind.DATASEC: 12,
    Kind.ENUM64: 12,
}

# INT encoding bits
INT_SIGNED = 1 << 0
INT_CHAR = 1 << 1
INT_BOOL = 1 << 2

# FUNC linkage (stored in vlen) and VAR linkage
LINKAGE_STATIC = 0
LINKAGE_GLOBAL = 1
LINKAGE_EXTERN = 2

#: kinds that only qualify another type (skipped when resolving)
MODIFIER_KINDS = frozenset({Kind.TYPEDEF, Kind.VOLATILE, Kind.CONST, Kind.RESTRICT, Kind.TYPE_TAG})
#: kinds whose ``size`` field is a byte size (the others use it as a type id)
SIZED_KINDS = frozenset(
    {Kind.INT, Kind.STRUCT, Kind.UNION, Kind.ENUM, Kind.ENUM64, Kind.DATASEC, Kind.FLOAT}
)


# Plain classes rather than dataclasses: see tracekit._record (start-up cost, issue 13).


class Member(Record):
    """A STRUCT/UNION member.  ``bit_offset`` is from the start of the composite."""

    __slots__ = ("name", "type", "bit_offset", "bitfield_size")
    _fields = __slots__

    def __init__(self, name: str, type: int, bit_offset: int, bitfield_size: int = 0) -> None:
        self.name = name
        self.type = type
        self.bit_offset = bit_offset
        self.bitfield_size = bitfield_size


class Param(Record):
    """A FUNC_PROTO parameter; a trailing ``Param("", 0)`` means varargs."""

    __slots__ = ("name", "type")
    _fields = __slots__

    def __init__(self, name: str, type: int) -> None:
        self.name = name
        self.type = type


class EnumValue(Record):
    __slots__ = ("name", "value")
    _fields = __slots__

    def __init__(self, name: str, value: int) -> None:
        self.name = name
        self.value = value


class VarSecinfo(Record):
    """One variable (or extern function) placed in a DATASEC."""

    __slots__ = ("type", "offset", "size")
    _fields = __slots__

    def __init__(self, type: int, offset: int, size: int) -> None:
        self.type = type
        self.offset = offset
        self.size = size


class Type:
    """One BTF type of any kind.

    Field use by kind:

    * ``size``: byte size for INT, STRUCT, UNION, ENUM, ENUM64, DATASEC, FLOAT.
    * ``type``: referenced type id for PTR, TYPEDEF, VOLATILE, CONST, RESTRICT, TYPE_TAG,
      FUNC (its FUNC_PROTO), FUNC_PROTO (return type), VAR, DECL_TAG; element type for ARRAY.
    * ``encoding``/``bits_offset``/``bits``: INT.
    * ``index_type``/``nelems``: ARRAY.
    * ``members`` (STRUCT/UNION), ``params`` (FUNC_PROTO), ``values`` (ENUM/ENUM64),
      ``secinfos`` (DATASEC).
    * ``linkage``: FUNC (kept in vlen on the wire) and VAR.
    * ``component_idx``: DECL_TAG (-1: the tag applies to the type itself).
    * ``kflag``: FWD (union), STRUCT/UNION (bitfield member encoding), ENUM/ENUM64
      (signed values), DECL_TAG/TYPE_TAG (attribute rather than btf tag).
    """

    # compared by identity (a type graph has cycles), so no __eq__
    __slots__ = ("kind", "name", "size", "type", "kflag", "encoding", "bits_offset", "bits", "index_type",
                 "nelems", "linkage", "component_idx", "members", "params", "values", "secinfos",
                 "raw_kind", "raw_vlen", "raw_words")
    _fields = __slots__

    def __init__(self, kind: Kind, name: str = "", size: int = 0, type: int = 0,
                 kflag: bool = False, encoding: int = 0, bits_offset: int = 0, bits: int = 0,
                 index_type: int = 0, nelems: int = 0, linkage: int = 0, component_idx: int = -1,
                 members: list[Member] | None = None, params: list[Param] | None = None,
                 values: list[EnumValue] | None = None, secinfos: list[VarSecinfo] | None = None,
                 raw_kind: int = 0, raw_vlen: int = 0, raw_words: tuple[int, ...] = ()) -> None:
        self.kind = kind
        self.name = name
        self.size = size
        self.type = type
        self.kflag = kflag
        self.encoding = encoding
        self.bits_offset = bits_offset
        self.bits = bits
        self.index_type = index_type
        self.nelems = nelems
        self.linkage = linkage
        self.component_idx = component_idx
        self.members: list[Member] = [] if members is None else members
        self.params: list[Param] = [] if params is None else params
        self.values: list[EnumValue] = [] if values is None else values
        self.secinfos: list[VarSecinfo] = [] if secinfos is None else secinfos
        #: a kind newer than tracekit (read as ``Kind.UNKN`` because the BTF's layout section
        #: said how to step over it): its wire kind number, vlen and the words after the
        #: 12-byte header, kept so the type re-encodes unchanged
        self.raw_kind = raw_kind
        self.raw_vlen = raw_vlen
        self.raw_words = raw_words

    @property
    def vlen(self) -> int:
        k = self.kind
        if self.raw_kind:
            return self.raw_vlen
        if k in (Kind.STRUCT, Kind.UNION):
            return len(self.members)
        if k in (Kind.ENUM, Kind.ENUM64):
            return len(self.values)
        if k == Kind.FUNC_PROTO:
            return len(self.params)
        if k == Kind.DATASEC:
            return len(self.secinfos)
        if k == Kind.FUNC:
            return self.linkage
        return 0

    @property
    def is_composite(self) -> bool:
        return self.kind in (Kind.STRUCT, Kind.UNION)

    @property
    def is_signed(self) -> bool:
        if self.kind == Kind.INT:
            return bool(self.encoding & INT_SIGNED)
        if self.kind in (Kind.ENUM, Kind.ENUM64):
            return self.kflag
        return False

    def __repr__(self) -> str:
        extra = ""
        if self.kind in SIZED_KINDS:
            extra = f" size={self.size}"
        elif self.kind != Kind.UNKN:
            extra = f" type={self.type}"
        return f"<BTF {self.kind.name} {self.name!r}{extra}>"


VOID = Type(Kind.UNKN)


def essential_name(name: str) -> str:
    """Strip a CO-RE ``___flavor`` suffix: ``task_struct___old`` -> ``task_struct``.

    The separator is the last ``X___Y`` with X and Y not underscores (libbpf's rule), so
    ``__u64`` and ``a____b`` keep their names.
    """
    for i in range(len(name) - 5, -1, -1):
        if (
            name[i] != "_"
            and name[i + 1 : i + 4] == "___"
            and name[i + 4] != "_"
        ):
            return name[: i + 1]
    return name
