"""CO-RE: rewrite an object's instructions so its field offsets, sizes, type ids and enum
values match a target kernel's BTF.  Pure: no syscalls, no file access.

The compiler records, for every instruction whose immediate or offset depends on a type
layout, a :class:`~tracekit.btf.ext.CoreRelo`: the local (object) type, an *access string*
("0:1:2": index into the root pointer, then member/element indices) and what is asked for
(offset, size, existence, ...).  For each one we

1. parse the access string against the local BTF into a *spec* (a list of accessors:
   named members and array indices; anonymous members are walked through but leave no
   accessor, so they may move freely in the target);
2. find *candidates*: target types of a compatible kind whose essential name (``___flavor``
   stripped) equals the local one -- from vmlinux, or from module BTFs only when vmlinux
   has none;
3. match the spec against each candidate (members by name, searching through anonymous
   members; arrays in bounds unless flexible; types compatible);
4. compute the value for every matching candidate; they must all agree;
5. patch the instruction, after checking that it holds what the local BTF predicts.

The rules follow libbpf's (relo_core.c) closely on purpose: an object that loads with
libbpf must load -- with identical instructions -- with tracekit.  Where libbpf's
behaviour is surprising it is kept and explained in a comment.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import IntEnum

from tracekit import _log
from tracekit.btf.ext import CoreRelo
from tracekit.btf.reader import BTF
from tracekit.btf.types import INT_SIGNED, MODIFIER_KINDS, Kind, Type, essential_name
from tracekit.errors import AmbiguousRelocationError, BTFError, CORERelocationError
from tracekit.obj.insn import (
    BPF_ALU,
    BPF_ALU64,
    BPF_LD,
    BPF_LDX,
    BPF_ST,
    BPF_STX,
    BYTES_SIZE,
    LD_IMM64,
    POISON_CORE,
    Insn,
    ldimm64_value,
    poison,
    set_ldimm64,
)

log = _log.getLogger("tracekit.obj.core")

__all__ = [
    "CoreKind",
    "CoreFixup",
    "Candidate",
    "CoreRelocator",
    "relocate",
    "poisoned_insns_in_log",
    "explain_poison",
    "POISON_CORE",
]


class CoreKind(IntEnum):
    """``enum bpf_core_relo_kind`` (uapi bpf.h)."""

    FIELD_BYTE_OFFSET = 0
    FIELD_BYTE_SIZE = 1
    FIELD_EXISTS = 2
    FIELD_SIGNED = 3
    FIELD_LSHIFT_U64 = 4
    FIELD_RSHIFT_U64 = 5
    TYPE_ID_LOCAL = 6
    TYPE_ID_TARGET = 7
    TYPE_EXISTS = 8
    TYPE_SIZE = 9
    ENUMVAL_EXISTS = 10
    ENUMVAL_VALUE = 11
    TYPE_MATCHES = 12


_FIELD_KINDS = frozenset(range(0, 6))
_TYPE_KINDS = frozenset({6, 7, 8, 9, 12})
_ENUMVAL_KINDS = frozenset({10, 11})
_ENUM_KINDS = (Kind.ENUM, Kind.ENUM64)
_U64 = (1 << 64) - 1
#: libbpf's BPF_CORE_SPEC_MAX_LEN: deeper access strings are refused
_SPEC_MAX_LEN = 64
#: recursion budget for type compatibility checks (libbpf's depth limit)
_MAX_DEPTH = 32
#: comparisons one type check may make: the depth limit alone lets a hostile DAG (30
#: nested structs of two members each, or prototypes whose parameters point at the next
#: prototype) take 2^30 steps; real kernel types need a few thousand at most
_MAX_STEPS = 1 << 16
#: the same for one member search through anonymous members (vmlinux needs < 100)
_MAX_MEMBER_STEPS = 1 << 12
#: candidate target types one local type may have: vmlinux has one or two per name, a
#: type several modules define a handful; tens of thousands make each relocation slow
_MAX_CANDIDATES = 1024


def _spend(budget: list[int], what: str = "type comparison") -> None:
    budget[0] -= 1
    if budget[0] < 0:
        raise CORERelocationError(f"{what} takes too many steps (hostile or degenerate BTF?)")


class _Walk:
    """State of one type check: a step budget, and the results of the pairs already
    compared (a DAG of shared types is then walked once per pair, not once per path)."""

    __slots__ = ("budget", "memo")

    def __init__(self) -> None:
        self.budget = [_MAX_STEPS]
        self.memo: dict[tuple[int, int, bool], bool] = {}


# --- results --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Candidate:
    """A target type a local type may correspond to."""

    btf: BTF
    type_id: int
    source: str  # "vmlinux", a module name, or the target BTF's file name

    def __str__(self) -> str:
        return f"[{self.type_id}] {self.btf.describe(self.type_id)} in {self.source}"


@dataclass(slots=True)
class CoreFixup:
    """What one CO-RE relocation did to one instruction."""

    insn: int  # index into the relocated instruction list
    kind: CoreKind
    type_id: int  # local type id
    type_name: str  # the local type, spelled C-like
    access: str  # access string, e.g. "0:1:2"
    orig: int  # value the compiler derived from the local BTF (u64)
    new: int  # value for the target (u64); meaningless when poisoned
    poisoned: bool = False
    reason: str = ""  # why the instruction was poisoned
    target: Candidate | None = None  # the (first) matching candidate, if any
    spec: str = ""  # the access path spelled out, e.g. "struct task_struct.pid"
    mem_size: tuple[int, int] | None = None  # (old, new) LDX/ST/STX size when resized
    width: int = 1  # instruction slots patched (2 for an ldimm64)

    def __str__(self) -> str:
        what = f"{self.kind.name} {self.spec or self.type_name} (access {self.access})"
        if self.poisoned:
            return f"insn #{self.insn}: {what}: poisoned: {self.reason}"
        return f"insn #{self.insn}: {what}: {self.orig} -> {self.new}"


# --- specs ----------------------------------------------------------------------------


@dataclass(slots=True)
class _Acc:
    type_id: int  # the composite (named accessor) or the element type (index accessor)
    idx: int
    name: str | None  # None: an array index (or the root pointer index)


@dataclass(slots=True)
class _Spec:
    btf: BTF
    root_id: int
    kind: int
    accs: list[_Acc] = field(default_factory=list)
    raw: list[int] = field(default_factory=list)
    bit_offset: int = 0

    def spelled(self) -> str:
        """``struct foo.bar[2].baz`` -- for logs and error messages."""
        out = self.btf.describe(self.root_id)
        if self.kind in _TYPE_KINDS:
            return out
        if self.kind in _ENUMVAL_KINDS:
            return f"{out}::{self.accs[0].name}" if self.accs else out
        for i, a in enumerate(self.accs):
            if a.name is not None:
                out += f".{a.name}"
            elif i > 0 or a.idx:
                out += f"[{a.idx}]"
        return out


@dataclass(slots=True)
class _Res:
    orig: int = 0
    new: int = 0
    validate: bool = True
    poison: bool = False
    reason: str = ""
    fail_memsz: bool = False
    orig_sz: int = 0
    new_sz: int = 0


class _Poison(Exception):
    """Internal: the relocation cannot be satisfied, poison the instruction (libbpf's EUCLEAN)."""


# --- helpers --------------------------------------------------------------------------


def _skip(btf: BTF, tid: int) -> tuple[int, Type]:
    for _ in range(_MAX_DEPTH * 4):
        if btf.kind_of(tid) not in MODIFIER_KINDS:
            return tid, btf.type(tid)
        tid = btf.type(tid).type
    raise CORERelocationError(f"modifier/typedef chain too long at type [{tid}]")


def _element(btf: BTF, tid: int) -> int:
    """The innermost element type of (possibly nested) array ``tid``; ``tid`` itself otherwise.

    A load or store through an array field touches one element, so that element -- not the
    whole array -- is what decides whether the access may change size (libbpf fixed the
    same check in 2025: ``int a[5]`` locally vs ``int a[7]`` in the kernel is no resize).
    """
    for _ in range(_MAX_DEPTH * 4):
        tid, t = _skip(btf, tid)
        if t.kind != Kind.ARRAY:
            return tid
        tid = t.type  # an ARRAY's type is its element type
    raise CORERelocationError(f"array nesting too deep at type [{tid}]")


def _size(btf: BTF, tid: int) -> int:
    try:
        return btf.size_of(tid)
    except BTFError as e:
        raise CORERelocationError(f"cannot size {btf.describe(tid)}: {e}") from None


def _kinds_compat(a: Kind, b: Kind) -> bool:
    return a == b or (a in _ENUM_KINDS and b in _ENUM_KINDS)


def _ess_eq(a: str, b: str) -> bool:
    return essential_name(a) == essential_name(b)


def _is_flex(btf: BTF, prev: _Acc | None, arr: Type) -> bool:
    """A zero-length array that is the last member of its struct (``char data[]``)."""
    if prev is None or prev.name is None or arr.nelems > 0:
        return False
    return prev.idx == len(btf.type(prev.type_id).members) - 1


def _mask(v: int) -> int:
    return v & _U64


def _s32(v: int) -> int:
    v &= 0xFFFFFFFF
    return v - (1 << 32) if v & 0x80000000 else v


def _btf_label(btf: BTF, i: int) -> str:
    name = (btf.name or "").rstrip("/").rsplit("/", 1)[-1]
    if i == 0 and (not name or name == "vmlinux" or name.startswith("vmlinux-")):
        return "vmlinux"
    return name or f"target[{i}]"


# --- type compatibility ---------------------------------------------------------------


def _fields_compat(lb: BTF, lid: int, tb: BTF, tid: int) -> bool:
    """Can a local member of type ``lid`` be read as a target member of type ``tid``?"""
    for _ in range(_MAX_DEPTH):
        lid, lt = _skip(lb, lid)
        tid, tt = _skip(tb, tid)
        if lt.is_composite and tt.is_composite:
            return True  # struct vs union is fine: only names and offsets matter
        if not _kinds_compat(lt.kind, tt.kind):
            return False
        k = lt.kind
        if k in (Kind.PTR, Kind.FLOAT):
            return True
        if k in (Kind.FWD, Kind.ENUM, Kind.ENUM64):
            # anonymous on either side, or the same name without flavors
            return not lt.name or not tt.name or _ess_eq(lt.name, tt.name)
        if k == Kind.INT:
            # old-style bitfield ints (non-zero bit offset) are refused, all else is compatible
            return lt.bits_offset == 0 and tt.bits_offset == 0
        if k == Kind.ARRAY:
            lid, tid = lt.type, tt.type
            continue
        return False
    raise CORERelocationError(f"type nesting too deep comparing {lb.describe(lid)}")


def _types_compat(lb: BTF, lid: int, tb: BTF, tid: int, level: int = _MAX_DEPTH,
                  walk: _Walk | None = None) -> bool:
    """libbpf's bpf_core_types_are_compat: the relaxed check used for TYPE_* relocations."""
    if walk is None:
        walk = _Walk()
    _spend(walk.budget)
    key = (lid, tid, False)
    got = walk.memo.get(key)
    if got is None:
        got = walk.memo[key] = _types_compat_walk(lb, lid, tb, tid, level, walk)
    return got


def _types_compat_walk(lb: BTF, lid: int, tb: BTF, tid: int, level: int, walk: _Walk) -> bool:
    if not _kinds_compat(lb.kind_of(lid), tb.kind_of(tid)):
        return False
    for _ in range(_MAX_DEPTH):
        lid, lt = _skip(lb, lid)
        tid, tt = _skip(tb, tid)
        if not _kinds_compat(lt.kind, tt.kind):
            return False
        k = lt.kind
        if k in (Kind.UNKN, Kind.STRUCT, Kind.UNION, Kind.ENUM, Kind.ENUM64, Kind.FWD):
            return True  # names were matched by the candidate search
        if k == Kind.INT:
            return lt.bits_offset == 0 and tt.bits_offset == 0
        if k in (Kind.PTR, Kind.ARRAY):
            lid, tid = lt.type, tt.type
            continue
        if k == Kind.FUNC_PROTO:
            if len(lt.params) != len(tt.params):
                return False
            for lp, tp in zip(lt.params, tt.params):
                if level <= 0:
                    raise CORERelocationError("function prototype nesting too deep")
                if not _types_compat(lb, _skip(lb, lp.type)[0], tb, _skip(tb, tp.type)[0], level - 1, walk):
                    return False
            lid, tid = lt.type, tt.type
            continue
        log.debug("unexpected kind %s in type compatibility check", k.name)
        return False
    raise CORERelocationError(f"type nesting too deep comparing {lb.describe(lid)}")


def _names_match(a: str, b: str) -> bool:
    return not a or not b or _ess_eq(a, b)


def _types_match(lb: BTF, lid: int, tb: BTF, tid: int, behind_ptr: bool = False, level: int = _MAX_DEPTH,
                 walk: _Walk | None = None) -> bool:
    """libbpf's bpf_core_types_match: the strict check of TYPE_MATCHES (bpf_core_type_matches)."""
    if walk is None:
        walk = _Walk()
    _spend(walk.budget)  # memo hits count too: n anonymous members x n candidates is n^2
    key = (lid, tid, behind_ptr)
    got = walk.memo.get(key)
    if got is None:
        if level <= 0:
            raise CORERelocationError("type nesting too deep in TYPE_MATCHES")
        got = walk.memo[key] = _types_match_walk(lb, lid, tb, tid, behind_ptr, level, walk)
    return got


def _types_match_walk(lb: BTF, lid: int, tb: BTF, tid: int, behind_ptr: bool, level: int, walk: _Walk) -> bool:
    for _ in range(_MAX_DEPTH):
        lid, lt = _skip(lb, lid)
        tid, tt = _skip(tb, tid)
        if not _names_match(lt.name, tt.name):
            return False
        lk, tk = lt.kind, tt.kind
        if lk == Kind.UNKN:
            return tk == Kind.UNKN
        if lk == Kind.FWD:
            if behind_ptr:
                if tk == Kind.FWD:
                    return lt.kflag == tt.kflag
                # a forward declaration's kflag says union (1) or struct (0)
                return (tk == Kind.STRUCT and not lt.kflag) or (tk == Kind.UNION and lt.kflag)
            return tk == Kind.FWD and lt.kflag == tt.kflag
        if lk in _ENUM_KINDS:
            if tk not in _ENUM_KINDS or lt.size != tt.size or len(lt.values) > len(tt.values):
                return False
            # _names_match for every pair, in linear time (enums may have 65535 values)
            tnames = {essential_name(tv.name) if tv.name else "" for tv in tt.values}
            if "" in tnames:
                return True
            return all(not lv.name or essential_name(lv.name) in tnames for lv in lt.values)
        if lk in (Kind.STRUCT, Kind.UNION):
            if behind_ptr:
                if lk == tk:
                    return True
                return tk == Kind.FWD and (lk == Kind.UNION) == tt.kflag
            if lk != tk or len(lt.members) > len(tt.members):
                return False
            # target members by essential name: a named local member is compared with its
            # namesakes and the anonymous members only (what _names_match lets through),
            # so two structs of n members cost n comparisons, not n^2
            by_name: dict[str, list[int]] = {}
            for tm in tt.members:
                by_name.setdefault(essential_name(tm.name) if tm.name else "", []).append(tm.type)
            anon = by_name.get("", [])
            every = [tm.type for tm in tt.members]
            for lm in lt.members:
                cands = (by_name.get(essential_name(lm.name), []) + anon) if lm.name else every
                if not any(_types_match(lb, lm.type, tb, c, behind_ptr, level - 1, walk) for c in cands):
                    return False
            return True
        if lk == Kind.INT:
            return (
                tk == Kind.INT
                and lt.size == tt.size
                and (lt.encoding & INT_SIGNED) == (tt.encoding & INT_SIGNED)
            )
        if lk == Kind.PTR:
            if tk != Kind.PTR:
                return False
            behind_ptr = True
            lid, tid = lt.type, tt.type
            continue
        if lk == Kind.ARRAY:
            if tk != Kind.ARRAY or lt.nelems != tt.nelems:
                return False
            lid, tid = lt.type, tt.type
            continue
        if lk == Kind.FUNC_PROTO:
            if tk != Kind.FUNC_PROTO or len(lt.params) != len(tt.params):
                return False
            for lp, tp in zip(lt.params, tt.params):
                if not _types_match(lb, lp.type, tb, tp.type, behind_ptr, level - 1, walk):
                    return False
            lid, tid = lt.type, tt.type
            continue
        log.debug("unexpected kind %s in TYPE_MATCHES", lk.name)
        return False
    raise CORERelocationError("type nesting too deep in TYPE_MATCHES")


# --- the engine -----------------------------------------------------------------------


class CoreRelocator:
    """One relocation pass of one object against one set of target BTFs.

    Candidate lists are cached per local type id for the whole pass (every program of the
    object), and -- as libbpf does -- narrowed to the candidates that matched once one
    relocation has matched some, so every later relocation of the same local type sees
    the same target type.  Poisoned instructions are remembered so a verifier log that
    trips over one can be explained (:meth:`explain_poison`).
    """

    def __init__(self, local: BTF, targets: Sequence[BTF]) -> None:
        self.local = local
        self.targets = list(targets)
        self._labels = [_btf_label(b, i) for i, b in enumerate(self.targets)]
        self._cands: dict[int, list[Candidate]] = {}
        self._poisons: dict[tuple[str, int], CoreFixup] = {}
        self._why = ""  # why the last candidate did not match, when it is not plain absence

    # -- public ------------------------------------------------------------------------

    def relocate(self, insns: list[Insn], relos: Sequence[CoreRelo], *, prog_name: str = "") -> list[CoreFixup]:
        """Compute every fixup for ``relos`` and patch ``insns`` in place."""
        out = []
        for n, relo in enumerate(relos):
            fx = self._one(insns, relo, n, prog_name)
            out.append(fx)
            if fx.poisoned:
                for k in range(fx.width):
                    self._poisons[(prog_name, fx.insn + k)] = fx
                _remember_poison(prog_name, fx)
        return out

    def explain_poison(self, prog_name: str, insn_index: int) -> str | None:
        """Why ``insn_index`` of ``prog_name`` was poisoned, as a sentence; None if it was not.

        The loader calls this when the verifier log shows ``call unknown#195896080`` (the
        CO-RE poison marker) at that instruction.
        """
        fx = self._poisons.get((prog_name, insn_index))
        if fx is None:
            return None
        prog = f"program {prog_name!r}" if prog_name else "program"
        return (
            f"{prog}: insn #{insn_index} uses a CO-RE relocation that failed for the target kernel "
            f"({fx.kind.name} of {fx.spec or fx.type_name}, access string {fx.access!r}): {fx.reason}. "
            "Guard the access with bpf_core_field_exists()/bpf_core_type_exists() so the verifier "
            "can prove it dead, or use a type definition that matches this kernel."
        )

    def candidates(self, local_id: int) -> list[Candidate]:
        """The (cached) candidate target types of local type ``local_id``."""
        c = self._cands.get(local_id)
        if c is None:
            c = self._find_cands(local_id)
            self._cands[local_id] = c
        return c

    # -- candidates --------------------------------------------------------------------

    def _find_cands(self, local_id: int) -> list[Candidate]:
        lt = self.local.type(local_id)
        if not lt.name:
            raise CORERelocationError(
                f"local type [{local_id}] {self.local.describe(local_id)} is anonymous: "
                "CO-RE needs a named type to find its counterpart in the kernel"
            )
        ess = essential_name(lt.name)
        out: list[Candidate] = []
        for i, tgt in enumerate(self.targets):
            if i == 1 and out:
                # Modules are searched only when vmlinux has no candidate -- then all of
                # them, as libbpf does: a type two modules both carry (9p's and 9pnet's
                # struct p9_client) yields two candidates, which must agree.
                break
            for tid in tgt.find_by_essential_name(ess):
                if i > 0 and tid < tgt.start_id:
                    continue  # a module's base (vmlinux) types were already searched
                if _kinds_compat(lt.kind, tgt.kind_of(tid)):
                    out.append(Candidate(tgt, tid, self._labels[i]))
                    if len(out) > _MAX_CANDIDATES:
                        raise CORERelocationError(
                            f"more than {_MAX_CANDIDATES} target types are named {ess!r}: every relocation "
                            "of the type would be matched against each (a corrupt or hostile target BTF?)"
                        )
        log.debug(
            "candidates for [%d] %s: %s", local_id, self.local.describe(local_id),
            ", ".join(map(str, out)) or "none",
        )
        return out

    # -- spec parsing and matching ------------------------------------------------------

    def _parse(self, relo: CoreRelo) -> _Spec:
        btf = self.local
        kind = relo.kind
        s = relo.access
        spec = _Spec(btf, relo.type_id, kind)
        if not s or not re.fullmatch(r"\d+(:\d+)*", s):
            raise CORERelocationError(f"malformed access string {s!r}")
        if kind in _TYPE_KINDS:
            if s != "0":
                raise CORERelocationError(f"type-based relocation with access string {s!r} (expected '0')")
            return spec
        raw = [int(x) for x in s.split(":")]
        if len(raw) > _SPEC_MAX_LEN:
            raise CORERelocationError(f"access string {s!r} is too deep")
        spec.raw = raw
        tid, t = _skip(btf, relo.type_id)
        spec.accs.append(_Acc(tid, raw[0], None))
        if kind in _ENUMVAL_KINDS:
            if t.kind not in _ENUM_KINDS or len(raw) > 1 or raw[0] >= len(t.values):
                raise CORERelocationError(
                    f"enum value relocation {s!r} does not name a value of {btf.describe(relo.type_id)}"
                )
            spec.accs[0].name = t.values[raw[0]].name
            return spec
        if kind not in _FIELD_KINDS:
            raise CORERelocationError(f"unknown CO-RE relocation kind {kind}")
        spec.bit_offset = raw[0] * _size(btf, tid) * 8
        for a in raw[1:]:
            tid, t = _skip(btf, tid)
            if t.is_composite:
                if a >= len(t.members):
                    raise CORERelocationError(
                        f"access string {s!r}: member index {a} out of range for {btf.describe(tid)} "
                        f"({len(t.members)} members)"
                    )
                m = t.members[a]
                spec.bit_offset += m.bit_offset
                if m.name:
                    spec.accs.append(_Acc(tid, a, m.name))
                tid = m.type
            elif t.kind == Kind.ARRAY:
                prev = spec.accs[-1]
                elem, _ = _skip(btf, t.type)
                if not _is_flex(btf, prev, t) and a >= t.nelems:
                    raise CORERelocationError(
                        f"access string {s!r}: index {a} out of bounds for {btf.describe(tid)}"
                    )
                spec.accs.append(_Acc(elem, a, None))
                spec.bit_offset += a * _size(btf, elem) * 8
                tid = elem
            else:
                raise CORERelocationError(
                    f"access string {s!r} indexes into {btf.describe(tid)}, which is neither a "
                    "struct/union nor an array"
                )
        return spec

    def _match_member(self, lacc: _Acc, tb: BTF, tid: int, ts: _Spec,
                      budget: list[int] | None = None) -> tuple[int, int] | None:
        """Find the local member ``lacc`` in target composite ``tid``, through anonymous members.

        Returns (1, next type id) on a compatible match, (0, 0) when the name matched but the
        type is incompatible (libbpf stops searching then), None when absent.
        """
        if budget is None:
            budget = [_MAX_MEMBER_STEPS]
        _spend(budget, "member search")
        tid, tt = _skip(tb, tid)
        if not tt.is_composite:
            return None
        lm = self.local.type(lacc.type_id).members[lacc.idx]
        for i, m in enumerate(tt.members):
            if len(ts.raw) >= _SPEC_MAX_LEN:
                raise CORERelocationError("struct/union/array nesting too deep")
            ts.bit_offset += m.bit_offset
            ts.raw.append(i)
            if not m.name:
                r = self._match_member(lacc, tb, m.type, ts, budget)
                if r is not None:
                    return r
            elif m.name == lm.name:
                if _fields_compat(self.local, lm.type, tb, m.type):
                    ts.accs.append(_Acc(tid, i, m.name))
                    return (1, m.type)
                self._why = (
                    f"{tb.describe(tid)}.{m.name} is {tb.describe(m.type)}, incompatible with the "
                    f"local {self.local.describe(lm.type)}"
                )
                return (0, 0)
            ts.bit_offset -= m.bit_offset
            ts.raw.pop()
        return None

    def _match(self, ls: _Spec, cand: Candidate) -> _Spec | None:
        self._why = ""
        tb = cand.btf
        tid = cand.type_id
        ts = _Spec(tb, tid, ls.kind)
        if ls.kind in _TYPE_KINDS:
            if ls.kind == CoreKind.TYPE_MATCHES:
                ok = _types_match(self.local, ls.root_id, tb, tid)
            else:
                ok = _types_compat(self.local, ls.root_id, tb, tid)
            return ts if ok else None
        lacc = ls.accs[0]
        if ls.kind in _ENUMVAL_KINDS:
            tid, tt = _skip(tb, tid)
            if tt.kind not in _ENUM_KINDS:
                return None
            want = essential_name(lacc.name or "")
            for i, v in enumerate(tt.values):
                if essential_name(v.name) == want:
                    ts.accs.append(_Acc(tid, i, v.name))
                    ts.raw.append(i)
                    return ts
            return None
        for i, lacc in enumerate(ls.accs):
            tid, tt = _skip(tb, tid)
            if lacc.name is not None:
                r = self._match_member(lacc, tb, tid, ts)
                if r is None or r[0] == 0:
                    return None
                tid = r[1]
            else:
                if i > 0:
                    # the root index (i == 0) steps over the root type itself; later
                    # index accessors need an array here
                    if tt.kind != Kind.ARRAY:
                        return None
                    if not _is_flex(tb, ts.accs[-1] if ts.accs else None, tt) and lacc.idx >= tt.nelems:
                        return None
                    tid, _ = _skip(tb, tt.type)
                if len(ts.raw) >= _SPEC_MAX_LEN:
                    raise CORERelocationError("struct/union/array nesting too deep")
                ts.accs.append(_Acc(tid, lacc.idx, None))
                ts.raw.append(lacc.idx)
                ts.bit_offset += lacc.idx * _size(tb, tid) * 8
        return ts

    # -- value computation -------------------------------------------------------------

    def _field_value(self, kind: int, spec: _Spec | None) -> tuple[int, int, int, bool]:
        """(value, access size, field type id, validate) of a field-based kind for ``spec``.

        The access size and type id are set only for byte offsets of non-bitfields: they
        decide whether a load/store may change its size.
        """
        if kind == CoreKind.FIELD_EXISTS:
            return (1 if spec is not None else 0), 0, 0, True
        if spec is None:
            raise _Poison("the field does not exist in the target kernel's types")
        btf = spec.btf
        acc = spec.accs[-1]
        sz = 0
        type_id = 0
        validate = True
        if acc.name is None:
            # an array element (or the root itself): only offset and size make sense
            if kind == CoreKind.FIELD_BYTE_OFFSET:
                val = spec.bit_offset // 8
                type_id = _element(btf, acc.type_id)
                sz = _size(btf, type_id)
            elif kind == CoreKind.FIELD_BYTE_SIZE:
                val = _size(btf, acc.type_id)
            else:
                raise CORERelocationError(f"{CoreKind(kind).name} cannot be applied to an array element access")
        else:
            t = btf.type(acc.type_id)
            m = t.members[acc.idx]
            field_id, mt = _skip(btf, m.type)
            bit_off = spec.bit_offset
            bit_sz = m.bitfield_size
            bitfield = bit_sz > 0
            if bitfield:
                # smallest naturally aligned load (of at least the declared type's size)
                # that covers the whole bitfield
                byte_sz = mt.size
                if byte_sz <= 0:
                    raise CORERelocationError(f"bitfield {m.name!r} has a zero-size type")
                byte_off = bit_off // 8 // byte_sz * byte_sz
                while bit_off + bit_sz - byte_off * 8 > byte_sz * 8:
                    if byte_sz >= 8:
                        raise CORERelocationError(
                            f"bitfield {m.name!r} of {btf.describe(acc.type_id)} cannot be read with one 64-bit load"
                        )
                    byte_sz *= 2
                    byte_off = bit_off // 8 // byte_sz * byte_sz
            else:
                byte_sz = _size(btf, field_id)
                byte_off = bit_off // 8
                bit_sz = byte_sz * 8
            # the compiler and we may legitimately disagree on bitfield load sizes, so only
            # the unambiguous values are checked against the instruction
            validate = not bitfield
            if kind == CoreKind.FIELD_BYTE_OFFSET:
                val = byte_off
                if not bitfield:
                    type_id = _element(btf, field_id)
                    sz = _size(btf, type_id) if type_id != field_id else byte_sz
            elif kind == CoreKind.FIELD_BYTE_SIZE:
                val = byte_sz
            elif kind == CoreKind.FIELD_SIGNED:
                val = int((mt.kind in _ENUM_KINDS and mt.kflag) or (mt.kind == Kind.INT and bool(mt.encoding & INT_SIGNED)))
                validate = True
            elif kind == CoreKind.FIELD_LSHIFT_U64:
                val = 64 - (bit_off + bit_sz - byte_off * 8)  # little-endian
            elif kind == CoreKind.FIELD_RSHIFT_U64:
                val = 64 - bit_sz
                validate = True
            else:  # pragma: no cover - kinds are checked when parsing
                raise CORERelocationError(f"unknown field relocation kind {kind}")
        return _mask(val), sz, type_id, validate

    def _calc(self, kind: int, ls: _Spec, ts: _Spec | None) -> _Res:
        res = _Res()
        try:
            if kind in _FIELD_KINDS:
                res.orig, res.orig_sz, orig_tid, res.validate = self._field_value(kind, ls)
                res.new, res.new_sz, new_tid, _ = self._field_value(kind, ts)
                if res.orig_sz != res.new_sz and ts is not None:
                    ot = self.local.type(orig_tid)
                    nt = ts.btf.type(new_tid)
                    # A load may change size only where zero extension keeps the value:
                    # pointers (32-bit kernels) and unsigned integers.
                    safe = (ot.kind == Kind.PTR and nt.kind == Kind.PTR) or (
                        ot.kind == Kind.INT and nt.kind == Kind.INT
                        and not ot.encoding & INT_SIGNED and not nt.encoding & INT_SIGNED
                    )
                    res.fail_memsz = not safe
            elif kind in _TYPE_KINDS:
                res.orig = self._type_value(kind, ls)
                res.new = self._type_value(kind, ts)
                # type ids change when objects are linked: never check them
                res.validate = kind != CoreKind.TYPE_ID_TARGET
            elif kind in _ENUMVAL_KINDS:
                res.orig = self._enum_value(kind, ls)
                res.new = self._enum_value(kind, ts)
            else:
                raise CORERelocationError(f"unknown CO-RE relocation kind {kind}")
        except _Poison as p:
            res.poison = True
            res.reason = str(p)
        return res

    def _type_value(self, kind: int, spec: _Spec | None) -> int:
        if spec is None:
            return 0  # type-based relocations read 0 when the target type is missing
        if kind == CoreKind.TYPE_ID_TARGET:
            return spec.root_id
        if kind in (CoreKind.TYPE_EXISTS, CoreKind.TYPE_MATCHES):
            return 1
        if kind == CoreKind.TYPE_SIZE:
            return _size(spec.btf, spec.root_id)
        if kind == CoreKind.TYPE_ID_LOCAL:
            return spec.root_id
        raise CORERelocationError(f"unknown type relocation kind {kind}")

    def _enum_value(self, kind: int, spec: _Spec | None) -> int:
        if kind == CoreKind.ENUMVAL_EXISTS:
            return 1 if spec is not None else 0
        if spec is None:
            raise _Poison("the enum value does not exist in the target kernel's types")
        a = spec.accs[0]
        return _mask(spec.btf.type(a.type_id).values[a.idx].value)

    # -- one relocation -----------------------------------------------------------------

    def _one(self, insns: list[Insn], relo: CoreRelo, n: int, prog_name: str) -> CoreFixup:
        try:
            kind = CoreKind(relo.kind)
        except ValueError:
            raise self._err(prog_name, relo, n, f"unknown CO-RE relocation kind {relo.kind}") from None
        if not 0 <= relo.insn < len(insns):
            raise self._err(prog_name, relo, n, f"instruction index {relo.insn} is outside the program ({len(insns)} insns)")
        try:
            tname = self.local.describe(relo.type_id)
        except BTFError as e:
            raise self._err(prog_name, relo, n, str(e)) from None
        fx = CoreFixup(relo.insn, kind, relo.type_id, tname, relo.access, 0, 0)
        try:
            ls = self._parse(relo)
            fx.spec = ls.spelled()
            res, target = self._resolve(relo, ls, fx)
        except AmbiguousRelocationError as e:
            raise AmbiguousRelocationError(self._prefix(prog_name, relo, n) + str(e)) from None
        except (CORERelocationError, BTFError) as e:
            raise self._err(prog_name, relo, n, str(e)) from None
        fx.orig, fx.new, fx.target = res.orig, res.new, target
        try:
            self._patch(insns, relo.insn, res, fx)
        except CORERelocationError as e:
            raise self._err(prog_name, relo, n, str(e)) from None
        return fx

    def _resolve(self, relo: CoreRelo, ls: _Spec, fx: CoreFixup) -> tuple[_Res, Candidate | None]:
        kind = relo.kind
        if kind == CoreKind.TYPE_ID_LOCAL:
            log.debug("%s: local type id %d, no candidate search", fx.spec, ls.root_id)
            return _Res(ls.root_id, ls.root_id, validate=False), None
        if not self.targets:
            raise CORERelocationError("no target BTF (kernel BTF is unavailable)")
        cands = self.candidates(relo.type_id)
        matched: list[Candidate] = []
        best: tuple[_Res, _Spec, Candidate] | None = None
        whys: list[str] = []
        for c in cands:
            ts = self._match(ls, c)
            if ts is None:
                log.debug("%s: candidate %s does not match%s", fx.spec, c, f": {self._why}" if self._why else "")
                whys.append(self._why or f"{c} has no {fx.spec}")
                continue
            res = self._calc(kind, ls, ts)
            log.debug(
                "%s: candidate %s matches as %s: %s",
                fx.spec, c, ts.spelled(), "poison" if res.poison else f"{res.orig} -> {res.new}",
            )
            if best is None:
                best = (res, ts, c)
            else:
                bres, bts, bc = best
                if ts.bit_offset != bts.bit_offset:
                    raise AmbiguousRelocationError(
                        f"{fx.spec}: candidates disagree on the field's position: {bc} has it at bit "
                        f"{bts.bit_offset}, {c} at bit {ts.bit_offset}"
                    )
                if res.poison != bres.poison or res.new != bres.new:
                    a = "poison" if bres.poison else bres.new
                    b = "poison" if res.poison else res.new
                    raise AmbiguousRelocationError(
                        f"{fx.spec}: candidates disagree: {bc} gives {a}, {c} gives {b}"
                    )
            matched.append(c)
        if matched:
            # libbpf keeps only the candidates that matched for later relocations of this type
            cands[:] = matched
            assert best is not None
            return best[0], best[2]
        log.debug("%s: no matching target among %d candidate(s)", fx.spec, len(cands))
        res = self._calc(kind, ls, None)
        if res.poison and not cands:
            res.reason = f"no type named {essential_name(self.local.type(relo.type_id).name)!r} " \
                f"of a compatible kind in the target BTF"
        elif res.poison:
            res.reason = f"no target type has a compatible {fx.spec}: " + "; ".join(whys)
        return res, None

    # -- patching ------------------------------------------------------------------------

    def _patch(self, insns: list[Insn], i: int, res: _Res, fx: CoreFixup) -> None:
        insn = insns[i]
        cls = insn.cls
        if res.poison:
            self._poison(insns, i, res.reason, fx)
            return
        orig, new = res.orig, res.new
        if cls in (BPF_ALU, BPF_ALU64):
            if insn.code & 0x08:  # BPF_X: no immediate to patch
                raise CORERelocationError(f"insn #{i} is a register ALU instruction, nothing to relocate")
            if res.validate and _mask(insn.imm) != orig:
                raise CORERelocationError(
                    f"insn #{i} (ALU) holds {insn.imm}, but the object's BTF says {orig}: "
                    "the object's code and BTF disagree"
                )
            insn.imm = _s32(new)
            log.debug("insn #%d (ALU): imm %d -> %d", i, orig, new)
        elif cls in (BPF_LDX, BPF_ST, BPF_STX):
            if res.validate and _mask(insn.off) != orig:
                raise CORERelocationError(
                    f"insn #{i} (LDX/ST/STX) has offset {insn.off}, but the object's BTF says {orig}: "
                    "the object's code and BTF disagree"
                )
            if new > 0x7FFF:
                raise CORERelocationError(f"insn #{i}: offset {new} does not fit an instruction's 16-bit offset")
            if res.fail_memsz:
                self._poison(
                    insns, i,
                    f"the field is {res.new_sz} bytes in the target but {res.orig_sz} locally, and "
                    "only pointers and unsigned integers can be loaded with another size",
                    fx,
                )
                return
            old_off = insn.off
            insn.off = new
            log.debug("insn #%d (LDX/ST/STX): off %d -> %d", i, old_off, new)
            if res.new_sz != res.orig_sz:
                if insn.mem_size != res.orig_sz:
                    raise CORERelocationError(
                        f"insn #{i} accesses {insn.mem_size} bytes but the field is {res.orig_sz} bytes locally"
                    )
                if res.new_sz not in BYTES_SIZE:
                    raise CORERelocationError(f"insn #{i}: cannot access {res.new_sz} bytes in one instruction")
                insn.code = (insn.code & 0xE7) | BYTES_SIZE[res.new_sz]
                fx.mem_size = (res.orig_sz, res.new_sz)
                log.debug("insn #%d: access size %d -> %d", i, res.orig_sz, res.new_sz)
        elif cls == BPF_LD:
            nxt = insns[i + 1] if i + 1 < len(insns) else None
            if (
                insn.code != LD_IMM64 or insn.src != 0 or insn.off != 0 or nxt is None
                or nxt.code != 0 or nxt.dst != 0 or nxt.src != 0 or nxt.off != 0
            ):
                raise CORERelocationError(f"insn #{i} is not a plain 64-bit immediate load")
            cur = ldimm64_value(insns, i)
            if res.validate and cur != orig:
                raise CORERelocationError(
                    f"insn #{i} (LDIMM64) holds {cur}, but the object's BTF says {orig}: "
                    "the object's code and BTF disagree"
                )
            set_ldimm64(insns, i, new)
            fx.width = 2
            log.debug("insn #%d (LDIMM64): %d -> %d", i, cur, new)
        else:
            raise CORERelocationError(f"insn #{i} (opcode {insn.code:#04x}) cannot carry a CO-RE relocation")

    def _poison(self, insns: list[Insn], i: int, reason: str, fx: CoreFixup) -> None:
        fx.poisoned = True
        fx.reason = reason
        fx.width = 2 if insns[i].is_ldimm64 else 1
        log.debug("insn #%d poisoned: %s", i, reason)
        poison(insns, i, POISON_CORE)

    # -- errors ------------------------------------------------------------------------

    def _prefix(self, prog_name: str, relo: CoreRelo, n: int) -> str:
        try:
            what = self.local.describe(relo.type_id)
        except BTFError:
            what = f"type [{relo.type_id}]"
        try:
            kname = CoreKind(relo.kind).name
        except ValueError:
            kname = f"kind {relo.kind}"
        prog = f"program {prog_name!r}: " if prog_name else ""
        return f"{prog}CO-RE relocation #{n} at insn #{relo.insn} ({kname} of {what}, access {relo.access!r}): "

    def _err(self, prog_name: str, relo: CoreRelo, n: int, msg: str) -> CORERelocationError:
        return CORERelocationError(self._prefix(prog_name, relo, n) + msg)


def relocate(
    insns: list[Insn],
    relos: Sequence[CoreRelo],
    local: BTF,
    targets: Sequence[BTF],
    *,
    prog_name: str = "",
    relocator: CoreRelocator | None = None,
) -> list[CoreFixup]:
    """Apply ``relos`` to ``insns`` (in place) for ``targets`` and return what was done.

    ``targets[0]`` is vmlinux (or a user-given BTF replacing it); the rest are module BTFs
    split on top of it, searched only for types vmlinux lacks.  Pass the same
    ``relocator`` (``CoreRelocator(local, targets)``) for every program of one object so
    candidate look-ups are shared and poisons can be explained later.
    """
    r = relocator or CoreRelocator(local, targets)
    return r.relocate(insns, relos, prog_name=prog_name)


# Why recent instructions were poisoned, so a loader holding only the program's plan can
# explain a verifier failure.  Bounded: a long-running process loads many objects.
_RECENT_POISONS: dict[tuple[str, int, int, str], str] = {}
_RECENT_MAX = 4096


def _remember_poison(prog_name: str, fx: CoreFixup) -> None:
    if len(_RECENT_POISONS) >= _RECENT_MAX:
        _RECENT_POISONS.clear()
    _RECENT_POISONS[(prog_name, fx.insn, fx.type_id, fx.access)] = fx.reason


def explain_poison(spec: object, plan: object, verifier_log: str) -> str | None:
    """Explain a verifier failure caused by a poisoned CO-RE instruction, or None.

    ``spec`` is the :class:`~tracekit.obj.spec.ObjectSpec` (its ``btf`` is the local BTF) and
    ``plan`` the program's plan (``name``, ``core_relos`` in the loaded instruction
    indices).  The log is searched for the poison marker; each poisoned instruction is
    mapped back to its relocation: program, instruction, type and access string.
    """
    insns = poisoned_insns_in_log(verifier_log)
    if not insns:
        return None
    name = getattr(plan, "name", "")
    relos = {r.insn: r for r in getattr(plan, "core_relos", ())}
    local: BTF | None = getattr(spec, "btf", None)
    parts = []
    for i in insns:
        r = relos.get(i)
        if r is None and i > 0 and i - 1 in relos:  # second half of a poisoned ldimm64
            r = relos[i - 1]
        if r is None:
            parts.append(f"insn #{i} carries the CO-RE poison marker but no relocation is recorded there")
            continue
        try:
            kname = CoreKind(r.kind).name
        except ValueError:
            kname = f"kind {r.kind}"
        what = f"[{r.type_id}]"
        if local is not None:
            try:
                what = _Spec_spelled(local, r)
            except Exception:  # noqa: BLE001 - best effort: the message must not fail
                what = local.describe(r.type_id)
        reason = _RECENT_POISONS.get((name, r.insn, r.type_id, r.access), "the target kernel's types do not match")
        parts.append(f"insn #{r.insn}: {kname} of {what} (access string {r.access!r}): {reason}")
    return (
        f"program {name!r} reached an instruction whose CO-RE relocation failed for this kernel: "
        + "; ".join(parts)
        + ". Guard such accesses with bpf_core_field_exists()/bpf_core_type_exists() so the "
        "verifier can prove them dead, or use type definitions matching this kernel."
    )


def _Spec_spelled(local: BTF, relo: CoreRelo) -> str:
    return CoreRelocator(local, [])._parse(relo).spelled()


_POISON_RE = re.compile(r"^(\d+): \(85\) call [^\n]*?#" + str(POISON_CORE) + r"\b", re.M)


def poisoned_insns_in_log(verifier_log: str) -> list[int]:
    """Instruction indices where a verifier log reports a call of the CO-RE poison marker."""
    return sorted({int(m.group(1)) for m in _POISON_RE.finditer(verifier_log)})
