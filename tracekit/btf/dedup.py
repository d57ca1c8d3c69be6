"""BTF deduplication: collapse equivalent types into one, as libbpf's ``btf__dedup``.

Linking appends every input's BTF, so each struct two objects pull from ``vmlinux.h``
is present twice.  Duplicates are legal BTF but grow what the kernel has to verify with
every library linked in.  This module finds, for every type, the first type that is
*equivalent* to it and rewrites every reference to go there.

The algorithm is libbpf's (``btf.c``), re-derived here over :class:`Type` objects:

1. **Primitive types** (INT, FLOAT, FWD, ENUM, ENUM64) collapse when they are equal
   field for field.  An enum forward declaration (no values) collapses into a full enum
   of its name, whichever comes first.
2. **Structs and unions**, in id order.  Candidates are earlier canonical composites with
   the same name, size and member names/offsets.  A candidate is equivalent when a
   depth-first walk of both type graphs in lockstep finds no difference; the walk keeps
   a *hypothetical map* (canonical id -> candidate-side id) so that a cycle (a list
   node pointing to itself, two structs pointing to each other) is accepted the second
   time round, and so that one canonical type is never equated with two *different*
   types of the other graph.  When the walk succeeds, the hypothetical map is kept:
   structs met deeper in the graph are mapped right away, and a FWD on one side gets
   resolved to the struct it met on the other.
3. **FWD resolution**: a FWD still on its own collapses into the struct (or union, per
   its kflag) of its name when exactly one canonical composite has that name.
4. **Reference types** (PTR, TYPEDEF, modifiers, ARRAY, FUNC_PROTO, FUNC, DECL_TAG), in
   dependency order: once what they refer to is canonical, equal reference types are
   simply equal tuples.
5. **Compaction**: canonical types keep their relative order and get new, dense ids;
   every reference is rewritten.  VAR and DATASEC are never merged (their identity is
   the variable or section), only their references are rewritten.

Strings are deduplicated as a side effect: the output is re-encoded into a fresh string
table in which every string appears once.  Anything outside the type section that holds
type ids or string offsets (``.BTF.ext``) must be rewritten through the returned maps;
:func:`dedup` does that for a raw ``.BTF.ext``.

Pure: no syscalls.  Iterative walks (no Python recursion), so deep type graphs of
kernel headers do not hit the recursion limit.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import NamedTuple

from tracekit.btf.reader import BTF
from tracekit.btf.types import EnumValue, Kind, Member, Param, Type, VarSecinfo
from tracekit.btf.writer import BTFBuilder
from tracekit.errors import BTFError

__all__ = ["DedupResult", "Deduped", "dedup", "dedup_types", "remap_ext"]

_UNPROCESSED = -1
_IN_PROGRESS = -2

_PRIM = frozenset({Kind.INT, Kind.FLOAT, Kind.FWD, Kind.ENUM, Kind.ENUM64})
_COMPOSITE = frozenset({Kind.STRUCT, Kind.UNION})
# kinds whose only reference is ``type``, compared by kind/name/kflag/linkage + that reference
_SIMPLE_REF = frozenset(
    {Kind.PTR, Kind.TYPEDEF, Kind.VOLATILE, Kind.CONST, Kind.RESTRICT, Kind.TYPE_TAG, Kind.FUNC}
)
_REF = _SIMPLE_REF | {Kind.ARRAY, Kind.FUNC_PROTO, Kind.DECL_TAG}
_ENUMS = (Kind.ENUM, Kind.ENUM64)
# kinds that equivalence lets stand for one another
_KIND_CLASS = {Kind.STRUCT: "composite", Kind.UNION: "composite", Kind.FWD: "composite",
               Kind.ENUM: "enum", Kind.ENUM64: "enum"}
# kinds whose ``type`` field is a type id
_TYPE_FIELD_REF = _SIMPLE_REF | {Kind.ARRAY, Kind.FUNC_PROTO, Kind.VAR, Kind.DECL_TAG}


@dataclass(slots=True)
class DedupResult:
    """Deduplicated types plus the map every outside reference must go through.

    ``types[0]`` is void and ``types[i]`` has the new id ``i``; ``id_map[old] == new`` for
    every input id (``id_map[0] == 0``).  Types are fresh copies: the input is not changed.
    """

    types: list[Type]
    id_map: list[int]

    def builder(self) -> BTFBuilder:
        """A fresh :class:`BTFBuilder` holding the types (its string table starts empty)."""
        b = BTFBuilder()
        b.types.extend(self.types[1:])
        return b

    def encode(self) -> bytes:
        return self.builder().encode()


class Deduped(NamedTuple):
    """What :func:`dedup` returns: new BTF bytes, the old -> new type id map, new BTF.ext."""

    btf: bytes
    id_map: list[int]
    ext: bytes | None


def _refs(t: Type) -> list[int]:
    """Every type id ``t`` refers to."""
    k = t.kind
    if k in _SIMPLE_REF or k in (Kind.VAR, Kind.DECL_TAG):
        return [t.type]
    if k == Kind.ARRAY:
        return [t.type, t.index_type]
    if k in _COMPOSITE:
        return [m.type for m in t.members]
    if k == Kind.FUNC_PROTO:
        return [t.type, *(p.type for p in t.params)]
    if k == Kind.DATASEC:
        return [s.type for s in t.secinfos]
    return []


def _enum_values(t: Type) -> tuple[tuple[str, int], ...]:
    # values are compared as the wire stores them (a -1 in a signed enum equals 0xffffffff
    # in an unsigned one only if the encodings agree, which kflag already decides)
    mask = (1 << (8 * 8 if t.kind == Kind.ENUM64 else 32)) - 1
    return tuple((v.name, v.value & mask) for v in t.values)


def _struct_key(t: Type) -> tuple[object, ...]:
    """Everything a struct/union is compared on except its members' types."""
    return (t.kind, t.name, t.size, t.kflag, tuple((m.name, m.bit_offset, m.bitfield_size) for m in t.members))


class _Dedup:
    def __init__(self, types: Sequence[Type]) -> None:
        n = len(types)
        if n == 0 or types[0].kind != Kind.UNKN:
            raise BTFError("BTF dedup: types[0] must be void")
        self.types = types
        self.kinds = [t.kind for t in types]
        m = [_UNPROCESSED] * n
        m[0] = 0
        for i in range(1, n):
            t = types[i]
            k = t.kind
            if k == Kind.UNKN:
                raise BTFError(f"BTF dedup: type {i} is void (UNKN); only id 0 may be")
            for r in _refs(t):
                if not 0 <= r < n:
                    raise BTFError(f"BTF dedup: type {i} ({k.name} {t.name!r}) refers to missing type {r}")
            if k in (Kind.VAR, Kind.DATASEC):
                m[i] = i  # never merged: a VAR is a variable, a DATASEC a section
        self.map = m
        self.hypot: dict[int, int] = {}
        self._skeys: dict[int, tuple[object, ...]] = {}

    # --- id resolution ---------------------------------------------------------------

    def resolve(self, x: int) -> int:
        """The canonical id ``x`` currently maps to (itself if unprocessed)."""
        m = self.map
        while True:
            y = m[x]
            if y < 0 or y == x:
                return x
            x = y

    def resolve_fwd(self, x: int) -> int:
        """A FWD that was resolved to a full struct: that struct; anything else: itself."""
        if self.kinds[x] != Kind.FWD:
            return x
        y = self.resolve(x)
        return x if self.kinds[y] == Kind.FWD else y

    # --- 1. primitive types ----------------------------------------------------------

    def prim_types(self) -> None:
        types, kinds, m = self.types, self.kinds, self.map
        table: dict[tuple[object, ...], int] = {}
        enums: dict[str, list[int]] = {}  # name -> canonical enums (and enum fwds) so far
        for i in range(1, len(types)):
            k = kinds[i]
            if k not in _PRIM:
                continue
            t = types[i]
            if k in _ENUMS:
                new = i
                is_fwd = not t.values
                vals = _enum_values(t)
                cands = enums.setdefault(t.name, [])
                for c in cands:
                    ct = types[c]
                    c_fwd = not ct.values
                    if not is_fwd and not c_fwd:
                        if (ct.kind, ct.kflag, ct.size) == (k, t.kflag, t.size) and _enum_values(ct) == vals:
                            new = c
                            break
                        continue
                    if is_fwd:
                        new = c  # a forward declaration takes whatever enum of its name exists
                        break
                    # an earlier forward declaration, still on its own: it now stands for this enum
                    if m[c] == c:
                        m[c] = i
                m[i] = new
                if new == i:
                    cands.append(i)
                continue
            if k == Kind.INT:
                key: tuple[object, ...] = (k, t.name, t.kflag, t.size, t.encoding, t.bits_offset, t.bits)
            else:  # FLOAT, FWD
                key = (k, t.name, t.kflag, t.size)
            c = table.setdefault(key, i)
            m[i] = c

    # --- 2. structs and unions -------------------------------------------------------

    def skey(self, i: int) -> tuple[object, ...]:
        k = self._skeys.get(i)
        if k is None:
            k = self._skeys[i] = _struct_key(self.types[i])
        return k

    def _bucket_key(self, i: int) -> tuple[object, ...]:
        """The shallow key refined by what equivalence needs of each member's type.

        Kernel headers have hundreds of composites of one shape (anonymous
        ``struct { u64 a; }`` and the like); comparing each new one with all of them is
        quadratic.  Equivalent members always have: the same canonical INT/FLOAT (those
        are final after the primitive pass), the same name, and kinds of one class (a
        FWD may stand for a struct or union, an enum declaration for an ENUM64).
        """
        types, kinds = self.types, self.kinds
        resolve = self.resolve
        parts: list[object] = []
        for mem in types[i].members:
            r = mem.type
            k = kinds[r]
            if k == Kind.INT or k == Kind.FLOAT:
                parts.append(resolve(r))
            else:
                parts.append((_KIND_CLASS.get(k, k), types[r].name))
        return (self.skey(i), tuple(parts))

    def struct_types(self) -> None:
        types, kinds, m = self.types, self.kinds, self.map
        table: dict[tuple[object, ...], list[int]] = {}
        for i in range(1, len(types)):
            if kinds[i] not in _COMPOSITE or m[i] >= 0:
                continue  # not a composite, or mapped while an earlier one was proven equal
            key = self._bucket_key(i)
            cands = table.setdefault(key, [])
            new = i
            for c in cands:
                self.hypot.clear()
                if self.is_equiv(i, c):
                    self.merge_hypot()
                    new = c
                    break
            m[i] = new
            if new == i:
                cands.append(i)

    def _identical_arrays(self, a: int, b: int) -> bool:
        # Compilers sometimes emit two identical ARRAY types for the same declaration and
        # use both inside one struct: equal by their raw fields, they are the same type.
        ta, tb = self.types[a], self.types[b]
        return (ta.kind == Kind.ARRAY and tb.kind == Kind.ARRAY and ta.name == tb.name and ta.kflag == tb.kflag
                and ta.type == tb.type and ta.index_type == tb.index_type and ta.nelems == tb.nelems)

    def _identical_structs(self, a: int, b: int) -> bool:
        # Same idea for composites (two copies of an anonymous struct in one graph).
        types = self.types
        work = [(a, b)]
        seen: set[tuple[int, int]] = set()
        while work:
            x, y = work.pop()
            if (x, y) in seen:
                continue
            seen.add((x, y))
            tx, ty = types[x], types[y]
            if tx.kind not in _COMPOSITE or tx.kind != ty.kind or self.skey(x) != self.skey(y):
                return False
            for mx, my in zip(tx.members, ty.members):
                if mx.type == my.type or self._identical_arrays(mx.type, my.type):
                    continue
                work.append((mx.type, my.type))
        return True

    def is_equiv(self, cand_id: int, canon_id: int) -> bool:
        """Are the graphs rooted at ``cand_id`` (new) and ``canon_id`` (canonical) equivalent?

        Depth-first, pairs visited in the same order a recursive walk would, with the
        hypothetical map updated before a pair's children are compared.
        """
        types, kinds, hypot = self.types, self.kinds, self.hypot
        resolve = self.resolve
        stack = [(cand_id, canon_id)]
        pop, push = stack.pop, stack.append
        while stack:
            cand, canon = pop()
            if resolve(cand) == resolve(canon):
                continue
            canon = self.resolve_fwd(canon)
            h = hypot.get(canon)
            if h is not None:
                if h == cand or self._identical_arrays(h, cand) or self._identical_structs(h, cand):
                    continue
                return False  # one canonical type can't stand for two different types
            hypot[canon] = cand
            ct, nt = types[cand], types[canon]
            if ct.name != nt.name:
                return False
            ck, nk = kinds[cand], kinds[canon]
            if ck != nk:
                if ck == Kind.FWD or nk == Kind.FWD:
                    fwd, real = (ct, nk) if ck == Kind.FWD else (nt, ck)
                    if real != (Kind.UNION if fwd.kflag else Kind.STRUCT):
                        return False
                    continue
                return False
            if ck in _COMPOSITE:
                if self.skey(cand) != self.skey(canon):
                    return False
                for a, b in zip(reversed(ct.members), reversed(nt.members)):
                    push((a.type, b.type))
            elif ck in _SIMPLE_REF:
                if ct.kflag != nt.kflag or (ck == Kind.FUNC and ct.linkage != nt.linkage):
                    return False
                push((ct.type, nt.type))
            elif ck == Kind.ARRAY:
                if ct.nelems != nt.nelems:
                    return False
                push((ct.type, nt.type))
                push((ct.index_type, nt.index_type))  # compared first
            elif ck == Kind.FUNC_PROTO:
                if len(ct.params) != len(nt.params) or any(a.name != b.name for a, b in zip(ct.params, nt.params)):
                    return False
                for pa, pb in zip(reversed(ct.params), reversed(nt.params)):
                    push((pa.type, pb.type))
                push((ct.type, nt.type))  # the return type first
            elif ck == Kind.INT:
                if (ct.kflag, ct.size, ct.encoding, ct.bits_offset, ct.bits) != (
                        nt.kflag, nt.size, nt.encoding, nt.bits_offset, nt.bits):
                    return False
            elif ck in _ENUMS:
                if ct.values and nt.values and (
                        (ct.kflag, ct.size) != (nt.kflag, nt.size) or _enum_values(ct) != _enum_values(nt)):
                    return False
            elif ck in (Kind.FWD, Kind.FLOAT):
                if (ct.kflag, ct.size) != (nt.kflag, nt.size):
                    return False
            else:
                return False  # VAR, DATASEC, DECL_TAG are not part of a type graph
        return True

    def merge_hypot(self) -> None:
        """Keep what a successful equivalence walk learned."""
        kinds, m = self.kinds, self.map
        resolve = self.resolve
        for canon, cand in self.hypot.items():
            t_id, c_id = resolve(cand), resolve(canon)
            tk, ck = kinds[t_id], kinds[c_id]
            # A FWD on one side met the full struct on the other: resolve it.  Mapping to a
            # not-yet-processed struct is fine: that struct gets its own canonical later and
            # the FWD follows through the chain.
            if tk != Kind.FWD and ck == Kind.FWD:
                m[c_id] = t_id
            elif tk == Kind.FWD and ck != Kind.FWD:
                m[t_id] = c_id
            # A struct deeper in the new graph that was proven equal to a canonical one:
            # map it now rather than prove it again when its turn comes.
            if tk in _COMPOSITE and ck != Kind.FWD and m[c_id] >= 0 and m[t_id] < 0:
                m[t_id] = c_id

    # --- 3. FWD -> the unique full struct of its name -------------------------------

    def resolve_fwds(self) -> None:
        types, kinds, m = self.types, self.kinds, self.map
        by_name: dict[str, int] = {}  # name -> canonical composite, 0 if several
        for i in range(1, len(types)):
            if kinds[i] in _COMPOSITE and m[i] == i and types[i].name:
                name = types[i].name
                by_name[name] = 0 if name in by_name else i
        for i in range(1, len(types)):
            if kinds[i] != Kind.FWD or m[i] != i:
                continue
            c = by_name.get(types[i].name, 0)
            if c and kinds[c] == (Kind.UNION if types[i].kflag else Kind.STRUCT):
                m[i] = c

    # --- 4. reference types ----------------------------------------------------------

    def ref_types(self) -> None:
        types, kinds, m = self.types, self.kinds, self.map
        resolve = self.resolve
        table: dict[tuple[object, ...], int] = {}
        for root in range(1, len(types)):
            if m[root] != _UNPROCESSED:
                continue
            stack = [root]
            while stack:
                x = stack[-1]
                state = m[x]
                if state >= 0:
                    stack.pop()
                    continue
                t = types[x]
                k = kinds[x]
                if k not in _REF:
                    raise BTFError(f"BTF dedup: type {x} ({k.name} {t.name!r}) was left unprocessed")
                if state == _UNPROCESSED:
                    m[x] = _IN_PROGRESS
                    for r in _refs(t):
                        s = m[r]
                        if s == _UNPROCESSED:
                            stack.append(r)
                        elif s == _IN_PROGRESS:
                            raise BTFError(
                                f"BTF dedup: type {x} ({k.name} {t.name!r}) is part of a reference loop "
                                f"through type {r} with no struct or union in it"
                            )
                    continue
                # every reference is canonical now: equal tuples are equal types
                stack.pop()
                if k in _SIMPLE_REF:
                    key: tuple[object, ...] = (k, t.name, t.kflag, t.linkage if k == Kind.FUNC else 0, resolve(t.type))
                elif k == Kind.ARRAY:
                    key = (k, t.name, t.kflag, resolve(t.type), resolve(t.index_type), t.nelems)
                elif k == Kind.FUNC_PROTO:
                    key = (k, t.name, t.kflag, resolve(t.type), tuple((p.name, resolve(p.type)) for p in t.params))
                else:  # DECL_TAG
                    key = (k, t.name, t.kflag, resolve(t.type), t.component_idx)
                m[x] = table.setdefault(key, x)

    # --- 5. compaction ---------------------------------------------------------------

    def compact(self) -> DedupResult:
        types, m = self.types, self.map
        n = len(types)
        new_id = [0] * n
        out: list[Type] = [Type(Kind.UNKN)]
        canon: list[int] = []
        for i in range(1, n):
            if m[i] == i:
                new_id[i] = len(canon) + 1
                canon.append(i)
        resolve = self.resolve
        id_map = [new_id[resolve(i)] for i in range(n)]
        for i in canon:
            out.append(_copy(types[i], id_map))
        return DedupResult(out, id_map)

    def run(self) -> DedupResult:
        self.prim_types()
        self.struct_types()
        self.resolve_fwds()
        self.ref_types()
        return self.compact()


def _copy(t: Type, tm: list[int]) -> Type:
    """A copy of ``t`` whose references go through ``tm``."""
    return Type(
        t.kind, name=t.name, size=t.size, type=tm[t.type] if t.kind in _TYPE_FIELD_REF else t.type,
        kflag=t.kflag, encoding=t.encoding, bits_offset=t.bits_offset, bits=t.bits,
        index_type=tm[t.index_type] if t.kind == Kind.ARRAY else t.index_type, nelems=t.nelems,
        linkage=t.linkage, component_idx=t.component_idx,
        members=[Member(x.name, tm[x.type], x.bit_offset, x.bitfield_size) for x in t.members],
        params=[Param(p.name, tm[p.type]) for p in t.params],
        values=[EnumValue(v.name, v.value) for v in t.values],
        secinfos=[VarSecinfo(tm[s.type], s.offset, s.size) for s in t.secinfos],
    )


def dedup_types(types: Sequence[Type]) -> DedupResult:
    """Deduplicate a type list (``types[0]`` is void, ``types[i]`` has id ``i``).

    Raises :class:`~tracekit.errors.BTFError` on a dangling reference or a loop of
    reference types that passes through no struct/union.
    """
    return _Dedup(types).run()


def _as_types(src: bytes | BTF | BTFBuilder) -> tuple[list[Type], BTF | BTFBuilder]:
    if isinstance(src, BTFBuilder):
        if src.base is not None:
            raise BTFError("BTF dedup of split BTF is not supported: deduplicate the base and split together")
        return [Type(Kind.UNKN), *(src.types[i] for i in range(1, len(src.types)))], src
    btf = src if isinstance(src, BTF) else BTF.from_bytes_or_elf(bytes(src), name="<dedup input>")
    if btf.base is not None:
        raise BTFError("BTF dedup of split BTF is not supported: deduplicate the base and split together")
    return [btf.type(i) for i in range(len(btf))], btf


def _string_of(src: BTF | BTFBuilder, off: int) -> str:
    if isinstance(src, BTF):
        return src.string(off)
    tbl = src.strings
    end = tbl.find(b"\0", off)
    if off >= len(tbl) or end < 0:
        raise BTFError(f"string offset {off} is outside the BTF string table")
    return tbl[off:end].decode("utf-8", "replace")


def remap_ext(ext: bytes, id_map: Sequence[int], string: Callable[[int], str], add_string: Callable[[str], int]) -> bytes:
    """A copy of a raw ``.BTF.ext`` with type ids through ``id_map`` and string offsets
    re-homed (``string(old_off) -> str``, ``add_string(str) -> new_off``).

    Record sizes larger than the ones we know (newer compilers) are kept; only the
    known leading fields are rewritten.
    """
    out = bytearray(ext)
    if len(out) < 24:
        raise BTFError(f".BTF.ext: {len(out)} bytes is too short for a header")
    magic, version, _flags, hdr_len = struct.unpack_from("<HBBI", out, 0)
    if magic != 0xEB9F or version != 1 or not 24 <= hdr_len <= len(out):
        raise BTFError(".BTF.ext: bad header (magic, version or length)")
    subs = [struct.unpack_from("<II", out, 8), struct.unpack_from("<II", out, 16)]
    if hdr_len >= 32:
        subs.append(struct.unpack_from("<II", out, 24))

    def tid(v: int, what: str) -> int:
        if v >= len(id_map):
            raise BTFError(f".BTF.ext: {what} refers to missing type {v}")
        return id_map[v]

    def soff(v: int) -> int:
        return add_string(string(v)) if v else 0

    # (minimum record size, which u32 fields are type ids, which are string offsets)
    layouts = [(8, (1,), ()), (16, (), (1, 2)), (16, (1,), (2,))]
    names = ["func_info", "line_info", "core_relo"]
    for (off, length), (min_rec, tids, strs), what in zip(subs, layouts, names):
        if not length:
            continue
        pos, end = hdr_len + off, hdr_len + off + length
        if end > len(out) or length < 4:
            raise BTFError(f".BTF.ext: {what} section runs past the end")
        rec = struct.unpack_from("<I", out, pos)[0]
        if rec < min_rec or rec % 4:
            raise BTFError(f".BTF.ext: {what} record size {rec} is invalid")
        pos += 4
        while pos < end:
            if pos + 8 > end:
                raise BTFError(f".BTF.ext: truncated {what} block header")
            sec_off, cnt = struct.unpack_from("<II", out, pos)
            struct.pack_into("<I", out, pos, soff(sec_off))
            pos += 8
            if pos + cnt * rec > end:
                raise BTFError(f".BTF.ext: {what} block with {cnt} records runs past the end")
            for _ in range(cnt):
                for f in tids:
                    o = pos + 4 * f
                    struct.pack_into("<I", out, o, tid(struct.unpack_from("<I", out, o)[0], what))
                for f in strs:
                    o = pos + 4 * f
                    struct.pack_into("<I", out, o, soff(struct.unpack_from("<I", out, o)[0]))
                pos += rec
    return bytes(out)


def dedup(src: bytes | BTF | BTFBuilder, *, ext: bytes | None = None) -> Deduped:
    """Deduplicate non-split BTF (raw bytes, an ELF's ``.BTF``, a reader or a builder).

    With ``ext`` (a raw ``.BTF.ext`` of the same object), also return it with type ids and
    string offsets rewritten for the new BTF.
    """
    types, holder = _as_types(src)
    res = dedup_types(types)
    b = res.builder()
    new_ext = None
    if ext is not None:
        new_ext = remap_ext(ext, res.id_map, lambda off: _string_of(holder, off), b.add_string)
    return Deduped(b.encode(), res.id_map, new_ext)
