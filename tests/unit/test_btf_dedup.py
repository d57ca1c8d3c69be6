"""tracekit.btf.dedup: exact results on small hand-built BTFs, then on clang objects and vmlinux."""

from __future__ import annotations

import shutil
import subprocess
import time
from io import BytesIO
from pathlib import Path

import pytest
from elftools.elf.elffile import ELFFile

from tests.support import build_bpf_object
from tracekit.btf.dedup import dedup, dedup_types
from tracekit.btf.ext import BTFExt
from tracekit.btf.reader import BTF
from tracekit.btf.types import (
    INT_SIGNED,
    EnumValue,
    Kind,
    Member,
    Param,
    Type,
    VarSecinfo,
)
from tracekit.btf.writer import BTFBuilder
from tracekit.errors import BTFError
from tracekit.obj import linker

VMLINUX = Path("/sys/kernel/btf/vmlinux")
BPFTOOL = shutil.which("bpftool") or "/usr/sbin/bpftool"


# --- helpers -------------------------------------------------------------------------


class G:
    """A few shorthands over BTFBuilder for building type graphs."""

    def __init__(self) -> None:
        self.b = BTFBuilder()

    def add(self, t: Type) -> int:
        return self.b.add_type(t)

    def int_(self, name: str = "int", size: int = 4) -> int:
        return self.add(Type(Kind.INT, name, size=size, encoding=INT_SIGNED, bits=8 * size))

    def ptr(self, to: int) -> int:
        return self.add(Type(Kind.PTR, type=to))

    def struct(self, name: str, size: int, *members: tuple[str, int, int], union: bool = False) -> int:
        return self.add(Type(Kind.UNION if union else Kind.STRUCT, name, size=size,
                             members=[Member(n, t, off) for n, t, off in members]))

    def fwd(self, name: str, union: bool = False) -> int:
        return self.add(Type(Kind.FWD, name, kflag=union))

    def typedef(self, name: str, to: int) -> int:
        return self.add(Type(Kind.TYPEDEF, name, type=to))

    def run(self):
        r = dedup(self.b)
        return BTF(r.btf), r.id_map


def shape(btf: BTF) -> list[str]:
    """Every type, in id order, as 'KIND name' (anonymous ones spelled out)."""
    out = []
    for tid, t in btf.types():
        out.append(f"{t.kind.name} {t.name or btf.describe(tid)}")
    return out


# --- structs -------------------------------------------------------------------------


def test_identical_structs_collapse() -> None:
    g = G()
    ids = []
    for _ in range(2):
        i = g.int_()
        lng = g.int_("long", 8)
        ids.append(g.struct("s", 16, ("a", i, 0), ("p", g.ptr(lng), 64)))
    btf, m = g.run()
    assert shape(btf) == ["INT int", "INT long", "PTR long *", "STRUCT s"]
    assert m[ids[0]] == m[ids[1]] == 4
    s = btf.type(4)
    assert [(x.name, btf.describe(x.type), x.bit_offset) for x in s.members] == [("a", "int", 0), ("p", "long *", 64)]
    # the input builder is not changed
    assert len(g.b.types) == 9


def test_self_referential_list_collapses() -> None:
    g = G()
    heads = []
    for _ in range(3):
        i = g.int_()
        fwd_ptr_slot = len(g.b.types)  # struct node is defined after its pointer, as clang does
        p = g.ptr(fwd_ptr_slot + 1)
        heads.append(g.struct("node", 16, ("v", i, 0), ("next", p, 64)))
    btf, m = g.run()
    assert shape(btf) == ["INT int", "PTR struct node *", "STRUCT node"]
    assert len({m[h] for h in heads}) == 1
    node = btf.type(3)
    assert btf.type(node.members[1].type).type == 3  # next points to itself


def test_mutually_recursive_structs_collapse() -> None:
    g = G()
    for _ in range(2):
        # struct a { struct b *b; }; struct b { struct a *a; int x; }
        base = len(g.b.types)
        pa, pb = g.ptr(base + 2), g.ptr(base + 4)
        g.struct("a", 8, ("b", pb, 0))
        g.struct("b", 16, ("a", pa, 0), ("x", g.int_(), 64))
    btf, m = g.run()
    assert sorted(shape(btf)) == sorted(["PTR struct a *", "PTR struct b *", "STRUCT a", "STRUCT b", "INT int"])
    assert len(btf) == 6


def test_same_name_different_layout_stays_distinct() -> None:
    g = G()
    i, lng = g.int_(), g.int_("long", 8)
    s1 = g.struct("s", 8, ("a", lng, 0))
    s2 = g.struct("s", 8, ("a", g.ptr(i), 0))  # same size and member names, other member type
    s3 = g.struct("s", 16, ("a", lng, 0))  # other size
    s4 = g.struct("s", 8, ("b", lng, 0))  # other member name
    btf, m = g.run()
    assert len({m[s1], m[s2], m[s3], m[s4]}) == 4
    assert [k for k in shape(btf) if k.startswith("STRUCT")] == ["STRUCT s"] * 4


def test_difference_deep_in_the_graph_keeps_both() -> None:
    # outer -> ptr -> inner, where only the inner structs differ (int vs long member)
    g = G()
    outs = []
    for mt in (g.int_("int"), g.int_("long", 8)):
        inner = g.struct("inner", 8, ("v", mt, 0))
        outs.append(g.struct("outer", 8, ("p", g.ptr(inner), 0)))
    btf, m = g.run()
    assert m[outs[0]] != m[outs[1]]
    assert shape(btf).count("STRUCT outer") == 2 and shape(btf).count("STRUCT inner") == 2


def test_one_canonical_type_never_stands_for_two_different_ones() -> None:
    # canonical: struct L { struct L *next; struct L *prev; } (one node)
    # candidate: two nodes La/Lb of that shape, La.next -> Lb, Lb.next -> La.  Every finite
    # unrolling looks alike, but L would have to equal both La and Lb: the hypothetical
    # map refuses, as libbpf does, and both graphs stay.
    g = G()
    i = g.int_()
    base = len(g.b.types)
    p = g.ptr(base + 1)
    canon = g.struct("L", 16, ("next", p, 0), ("prev", p, 64))
    base = len(g.b.types)
    pa, pb = g.ptr(base + 2), g.ptr(base + 3)
    la = g.struct("L", 16, ("next", pb, 0), ("prev", pa, 64))
    lb = g.struct("L", 16, ("next", pa, 0), ("prev", pb, 64))
    assert i == 1
    _, m = g.run()
    assert m[la] != m[canon] and m[lb] != m[canon]


def test_struct_and_union_of_same_shape_stay_distinct() -> None:
    g = G()
    i = g.int_()
    s = g.struct("x", 4, ("a", i, 0))
    u = g.struct("x", 4, ("a", i, 0), union=True)
    btf, m = g.run()
    assert m[s] != m[u]


def test_anonymous_unions_collapse_by_structure() -> None:
    g = G()
    outers = []
    anon = []
    for _ in range(2):
        i, c = g.int_(), g.int_("char", 1)
        u = g.struct("", 4, ("a", i, 0), ("b", c, 0), union=True)
        anon.append(u)
        outers.append(g.struct("outer", 8, ("", u, 0), ("z", i, 32)))
    other = g.struct("", 4, ("a", g.int_(), 0), union=True)  # one member fewer: a different union
    btf, m = g.run()
    assert m[anon[0]] == m[anon[1]] and m[outers[0]] == m[outers[1]]
    assert m[other] != m[anon[0]]
    assert shape(btf) == ["INT int", "INT char", "UNION union (anon)", "STRUCT outer", "UNION union (anon)"]


def test_bitfields_compared_by_bit_size() -> None:
    g = G()
    i = g.int_()
    a = g.add(Type(Kind.STRUCT, "bf", size=4, kflag=True, members=[Member("x", i, 0, 3), Member("y", i, 3, 5)]))
    b = g.add(Type(Kind.STRUCT, "bf", size=4, kflag=True, members=[Member("x", i, 0, 3), Member("y", i, 3, 5)]))
    c = g.add(Type(Kind.STRUCT, "bf", size=4, kflag=True, members=[Member("x", i, 0, 3), Member("y", i, 3, 4)]))
    _, m = g.run()
    assert m[a] == m[b] != m[c]


# --- FWD ------------------------------------------------------------------------------


def test_fwd_met_in_the_graph_resolves_to_the_full_struct() -> None:
    g = G()
    # object 1: struct user { struct foo *f; } with foo only forward-declared
    f1 = g.fwd("foo")
    u1 = g.struct("user", 8, ("f", g.ptr(f1), 0))
    # object 2: the same with struct foo defined
    i = g.int_()
    foo = g.struct("foo", 4, ("v", i, 0))
    u2 = g.struct("user", 8, ("f", g.ptr(foo), 0))
    btf, m = g.run()
    assert m[u1] == m[u2] and m[f1] == m[foo]
    assert shape(btf) == ["PTR struct foo *", "STRUCT user", "INT int", "STRUCT foo"]
    assert btf.type(1).type == 4  # the surviving pointer points to the full struct


def test_fwd_resolves_to_unique_full_struct_by_name() -> None:
    g = G()
    fs = g.fwd("lonely")
    fu = g.fwd("lonely_u", union=True)
    fw = g.fwd("wrong_kind", union=True)  # names a struct: stays a FWD
    fa = g.fwd("amb")  # two different structs named amb: ambiguous, stays
    i = g.int_()
    s = g.struct("lonely", 4, ("v", i, 0))
    u = g.struct("lonely_u", 4, ("v", i, 0), union=True)
    g.struct("wrong_kind", 4, ("v", i, 0))
    a1 = g.struct("amb", 4, ("v", i, 0))
    a2 = g.struct("amb", 8, ("v", i, 0))
    btf, m = g.run()
    assert m[fs] == m[s] and m[fu] == m[u]
    assert btf.kind_of(m[fw]) == Kind.FWD and btf.kind_of(m[fa]) == Kind.FWD
    assert m[a1] != m[a2]


def test_fwds_of_one_name_collapse() -> None:
    g = G()
    a, b = g.fwd("x"), g.fwd("x")
    c = g.fwd("x", union=True)
    btf, m = g.run()
    assert m[a] == m[b] != m[c]
    assert shape(btf) == ["FWD x", "FWD x"]


# --- reference types -----------------------------------------------------------------


def test_typedef_chains() -> None:
    g = G()
    tops = []
    for _ in range(2):
        i = g.int_()
        t1 = g.typedef("myint", i)
        t2 = g.typedef("myint2", g.add(Type(Kind.CONST, type=t1)))
        tops.append(g.typedef("myint3", g.add(Type(Kind.VOLATILE, type=t2))))
    other = g.typedef("myint3", g.int_("long", 8))  # same name, other target
    btf, m = g.run()
    assert m[tops[0]] == m[tops[1]] != m[other]
    assert shape(btf) == ["INT int", "TYPEDEF myint", "CONST const myint", "TYPEDEF myint2", "VOLATILE volatile myint2",
                          "TYPEDEF myint3", "INT long", "TYPEDEF myint3"]


def test_arrays() -> None:
    g = G()
    i = g.int_()
    a = g.add(Type(Kind.ARRAY, type=i, index_type=i, nelems=4))
    b = g.add(Type(Kind.ARRAY, type=i, index_type=i, nelems=4))
    c = g.add(Type(Kind.ARRAY, type=i, index_type=i, nelems=5))
    _, m = g.run()
    assert m[a] == m[b] != m[c]


def test_func_protos_and_funcs() -> None:
    g = G()
    i = g.int_()
    p1 = g.add(Type(Kind.FUNC_PROTO, type=i, params=[Param("a", i), Param("b", i)]))
    p2 = g.add(Type(Kind.FUNC_PROTO, type=i, params=[Param("a", i), Param("b", i)]))
    p3 = g.add(Type(Kind.FUNC_PROTO, type=i, params=[Param("", i), Param("", i)]))  # names differ: kept
    p4 = g.add(Type(Kind.FUNC_PROTO, type=i, params=[Param("a", i), Param("", 0)]))  # varargs
    p5 = g.add(Type(Kind.FUNC_PROTO, type=0, params=[Param("a", i), Param("b", i)]))  # returns void
    f1 = g.add(Type(Kind.FUNC, "f", type=p1, linkage=1))
    f2 = g.add(Type(Kind.FUNC, "f", type=p2, linkage=1))
    f3 = g.add(Type(Kind.FUNC, "f", type=p2, linkage=0))  # static: another function
    btf, m = g.run()
    assert m[p1] == m[p2]
    assert len({m[p1], m[p3], m[p4], m[p5]}) == 4
    assert m[f1] == m[f2] != m[f3]
    assert btf.type(m[f1]).type == m[p1]


def test_function_pointer_in_struct() -> None:
    g = G()
    ss = []
    for _ in range(2):
        i = g.int_()
        base = len(g.b.types)
        # struct ops { int (*cb)(struct ops *); }: struct -> ptr -> proto -> ptr -> struct
        proto = g.add(Type(Kind.FUNC_PROTO, type=i, params=[Param("", base + 1)]))
        g.ptr(base + 3)  # struct ops *
        ss.append(g.struct("ops", 8, ("cb", g.ptr(proto), 0)))
        assert ss[-1] == base + 3
    btf, m = g.run()
    assert m[ss[0]] == m[ss[1]]
    assert len(btf) == 6  # void + int, proto, ptr-to-ops, ops, ptr-to-proto


# --- enums ---------------------------------------------------------------------------


def test_enums_and_enum64() -> None:
    g = G()

    def enum(name: str, vals: list[tuple[str, int]], *, k: Kind = Kind.ENUM, size: int = 4) -> int:
        return g.add(Type(k, name, size=size, values=[EnumValue(n, v) for n, v in vals]))

    e1 = enum("e", [("A", 1), ("B", 2)])
    e2 = enum("e", [("A", 1), ("B", 2)])
    e3 = enum("e", [("A", 1), ("B", 3)])  # other value
    fwd = enum("e", [])  # enum forward declaration: takes the first full enum of its name
    big1 = enum("e64", [("X", 1 << 40)], k=Kind.ENUM64, size=8)
    big2 = enum("e64", [("X", 1 << 40)], k=Kind.ENUM64, size=8)
    small = enum("e64", [("X", 1)], k=Kind.ENUM, size=4)  # same name, 32-bit kind
    later_fwd = enum("late", [])
    late = enum("late", [("L", 7)])  # a full enum after its forward declaration
    btf, m = g.run()
    assert m[e1] == m[e2] == m[fwd] != m[e3]
    assert m[big1] == m[big2] != m[small]
    assert m[later_fwd] == m[late] and btf.type(m[late]).values == [EnumValue("L", 7)]


def test_ints_and_floats() -> None:
    g = G()
    a, b = g.int_(), g.int_()
    u = g.add(Type(Kind.INT, "int", size=4, bits=32))  # unsigned: another type
    f1, f2 = g.add(Type(Kind.FLOAT, "double", size=8)), g.add(Type(Kind.FLOAT, "double", size=8))
    _, m = g.run()
    assert m[a] == m[b] != m[u] and m[f1] == m[f2]


# --- VAR / DATASEC ------------------------------------------------------------------


def test_vars_and_datasecs_are_kept_and_remapped() -> None:
    g = G()
    i1 = g.int_()
    v1 = g.add(Type(Kind.VAR, "x", type=i1, linkage=1))
    i2 = g.int_()
    v2 = g.add(Type(Kind.VAR, "x", type=i2, linkage=1))  # same name and type: still a second variable
    d1 = g.add(Type(Kind.DATASEC, ".bss", size=8, secinfos=[VarSecinfo(v1, 0, 4), VarSecinfo(v2, 4, 4)]))
    d2 = g.add(Type(Kind.DATASEC, ".bss", size=8, secinfos=[VarSecinfo(v1, 0, 4), VarSecinfo(v2, 4, 4)]))
    tag1 = g.add(Type(Kind.DECL_TAG, "t", type=v1, component_idx=-1))
    tag2 = g.add(Type(Kind.DECL_TAG, "t", type=v1, component_idx=-1))
    btf, m = g.run()
    assert shape(btf) == ["INT int", "VAR x", "VAR x", "DATASEC .bss", "DATASEC .bss", "DECL_TAG t"]
    assert m[v1] != m[v2] and m[d1] != m[d2] and m[tag1] == m[tag2]
    assert btf.type(m[v2]).type == m[i1] == 1
    assert [(s.type, s.offset, s.size) for s in btf.type(m[d1]).secinfos] == [(2, 0, 4), (3, 4, 4)]


# --- strings, errors, idempotence ------------------------------------------------------


def test_strings_are_deduplicated() -> None:
    g = G()
    g.b._strings += b"junk\0int\0int\0"  # stale and repeated strings in the input table
    g.int_()
    g.int_()
    btf, _ = g.run()
    assert btf.strings == b"\0int\0"


def test_bad_graphs_are_refused() -> None:
    t = [Type(Kind.UNKN), Type(Kind.PTR, type=7)]
    with pytest.raises(BTFError, match="refers to missing type 7"):
        dedup_types(t)
    loop = [Type(Kind.UNKN), Type(Kind.PTR, type=2), Type(Kind.CONST, type=1)]
    with pytest.raises(BTFError, match="reference loop"):
        dedup_types(loop)
    with pytest.raises(BTFError, match="void"):
        dedup_types([Type(Kind.INT, "int", size=4)])


def _same_graph(a: BTF, b: BTF) -> None:
    """``a`` and ``b`` hold the same types with the same references, except that DATASECs
    may sit elsewhere (libbpf's linker moves them last): pair the others in order and the
    DATASECs by name, then compare every type with its references translated."""
    def split(x: BTF) -> tuple[list[int], dict[str, int]]:
        others = [i for i in x.ids() if x.kind_of(i) != Kind.DATASEC]
        return others, {x.name_of(i): i for i in x.ids() if x.kind_of(i) == Kind.DATASEC}
    ao, ad = split(a)
    bo, bd = split(b)
    assert len(ao) == len(bo) and sorted(ad) == sorted(bd)
    perm = {0: 0, **dict(zip(ao, bo)), **{ad[n]: bd[n] for n in ad}}
    for i in a.ids():
        t, u = a.type(i), b.type(perm[i])
        assert (t.kind, t.name, t.kflag, t.size if t.kind != Kind.DATASEC else 0, t.encoding, t.bits, t.nelems,
                t.linkage, t.component_idx) == (u.kind, u.name, u.kflag, u.size if u.kind != Kind.DATASEC else 0,
                                                u.encoding, u.bits, u.nelems, u.linkage, u.component_idx), (i, t, u)
        if t.kind != Kind.DATASEC:  # libbpf's linker gives DATASECs sizes and offsets: not dedup's job
            assert perm[t.type] == u.type if t.type else u.type == 0, (i, t, u)
            assert [(m.name, perm[m.type], m.bit_offset, m.bitfield_size) for m in t.members] == \
                [(m.name, m.type, m.bit_offset, m.bitfield_size) for m in u.members], (i, t)
            assert [(p.name, perm[p.type]) for p in t.params] == [(p.name, p.type) for p in u.params], (i, t)
            assert t.values == u.values
            if t.kind == Kind.ARRAY:
                assert perm[t.index_type] == u.index_type


def _bpftool_btf(tmp_path: Path, *objs: Path) -> BTF:
    if not Path(BPFTOOL).exists():
        pytest.skip("bpftool is not installed")
    out = tmp_path / "ref.o"
    subprocess.run([BPFTOOL, "gen", "object", str(out), *map(str, objs)], check=True, capture_output=True)
    return BTF.from_file(str(out))


@pytest.mark.parametrize("src", ["elf_full.bpf.c", "core_live.bpf.c", "link_lib.bpf.c", "globals.bpf.c",
                                 "attach_tracing.bpf.c", "module_kfunc.bpf.c"])
def test_clang_object_matches_libbpf_dedup(src: str, tmp_path: Path) -> None:
    """clang emits one FUNC_PROTO per function: dedup collapses the equal ones, exactly as
    libbpf (``bpftool gen object`` of one input runs btf__dedup): the same types in the
    same order.  Only DATASECs differ: libbpf's linker moves them last and fills in their
    sizes and offsets, which is the linker's job, not dedup's."""
    obj = build_bpf_object(src)
    btf = BTF.from_file(str(obj))
    r = dedup(btf)
    out = BTF(r.btf)
    ref = _bpftool_btf(tmp_path, obj)
    _same_graph(out, ref)
    assert dedup(r.btf).btf == r.btf  # a fixed point
    # every old id maps to a type of the same kind and name (FWD -> struct aside)
    for old in btf.ids():
        assert (out.kind_of(r.id_map[old]), out.name_of(r.id_map[old])) == (btf.kind_of(old), btf.name_of(old)) \
            or btf.kind_of(old) == Kind.FWD


def _sec(data: bytes, name: str) -> bytes:
    return ELFFile(BytesIO(data)).get_section_by_name(name).data()


def test_dedup_with_ext_matches_the_linker() -> None:
    objs = [build_bpf_object("link_main.bpf.c"), build_bpf_object("link_lib.bpf.c")]
    raw = linker.link(objs, dedup=False)
    done = linker.link(objs)
    r = dedup(_sec(raw, ".BTF"), ext=_sec(raw, ".BTF.ext"))
    assert r.ext is not None
    a, b = BTF(r.btf), BTF(_sec(done, ".BTF"))
    assert [(t.kind, t.name) for _, t in a.types()] == [(t.kind, t.name) for _, t in b.types()]
    ea, eb = BTFExt.parse(r.ext, a), BTFExt.parse(_sec(done, ".BTF.ext"), b)
    assert {s: [(x.insn, a.name_of(x.type_id)) for x in v] for s, v in ea.func_info.items()} == \
        {s: [(x.insn, b.name_of(x.type_id)) for x in v] for s, v in eb.func_info.items()}
    assert {s: [(x.insn, a.string(x.file_name_off), a.string(x.line_off), x.line_col) for x in v]
            for s, v in ea.line_info.items()} == \
        {s: [(x.insn, b.string(x.file_name_off), b.string(x.line_off), x.line_col) for x in v]
         for s, v in eb.line_info.items()}
    assert {s: [(x.insn, a.describe(x.type_id), x.access, x.kind) for x in v] for s, v in ea.core_relos.items()} == \
        {s: [(x.insn, b.describe(x.type_id), x.access, x.kind) for x in v] for s, v in eb.core_relos.items()}
    with pytest.raises(BTFError, match="too short"):
        dedup(_sec(raw, ".BTF"), ext=b"\x9f\xeb")


def test_vmlinux_is_a_fixed_point_and_fast() -> None:
    if not VMLINUX.exists():
        pytest.skip("no /sys/kernel/btf/vmlinux")
    btf = BTF(VMLINUX.read_bytes())
    t0 = time.perf_counter()
    types = [btf.type(i) for i in range(len(btf))]
    decode = time.perf_counter() - t0
    t0 = time.perf_counter()
    r = dedup_types(types)
    took = time.perf_counter() - t0
    # pahole already deduplicated vmlinux: nothing may collapse
    assert len(r.types) == len(types)
    # ~130k types: deduplicating costs a small multiple of decoding them (measured ~2.5x)
    assert took < 10 * decode, (took, decode)
